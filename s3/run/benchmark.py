"""The benchmark job behind ``scripts/benchmark.py``: seconds per frame of the streaming engine in
the state a user sees, with a full memory.

A random video of ``frame_size`` with ``num_objects`` objects goes through the architecture's
engine: the first frame with its masks, then memory frames until the working memory is full (one
per frame, to get there quickly), then ``warmup`` untimed and ``repeats`` timed frames on the
evaluation schedule (a memory frame every ``mem_every``-th frame, as the presets do).
"""

from __future__ import annotations

import platform
import statistics
import time
from dataclasses import dataclass
from typing import Any, Optional

import torch
from omegaconf import DictConfig
from torch import nn

from s3.config import to_model_config
from s3.config.inference import InferenceConfig
from s3.config.jobs import BenchmarkConfig, job_config
from s3.run.architectures import build_model, make_processor
from s3.run.runtime import process_runtime


@dataclass
class FrameTiming:
    seconds: list[float]  # one per timed frame
    peak_memory_mib: Optional[float]  # CUDA only
    device: str  # what ran it, in words

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def fps(self) -> float:
        return 1.0 / self.median


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_streaming(
    network: nn.Module,
    model_cfg: Any,
    frame_size: tuple[int, int],
    num_objects: int,
    settings: InferenceConfig,
    repeats: int = 3,
    warmup: int = 1,
    seed: int = 0,
) -> FrameTiming:
    """Median wall time of one engine step with a full working memory (see the module docstring)."""
    device = next(network.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    h, w = frame_size
    first_mask = torch.randint(0, num_objects + 1, (h, w), generator=generator).to(device)
    processor = make_processor(network, model_cfg, settings)
    fill_frames = settings.max_mem_frames - 1  # memory frames after the first one that fill the working memory

    def frame() -> torch.Tensor:
        return torch.rand(3, h, w, generator=generator).to(device)

    processor.step(frame(), first_mask)
    processor.update_config(mem_every=1)
    for _ in range(fill_frames):
        processor.step(frame())
    processor.update_config(mem_every=settings.mem_every)
    for _ in range(warmup):
        processor.step(frame())
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    seconds = []
    for _ in range(repeats):
        image = frame()
        _sync(device)
        start = time.perf_counter()
        processor.step(image)
        _sync(device)
        seconds.append(time.perf_counter() - start)
    if device.type == "cuda":
        peak: Optional[float] = torch.cuda.max_memory_allocated(device) / 2**20
        where = torch.cuda.get_device_name(device)
    else:
        peak = None
        where = f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    return FrameTiming(seconds, peak, where)


def benchmark_from_config(node: DictConfig) -> tuple[Any, BenchmarkConfig, FrameTiming]:
    """The job on a composed ``benchmark`` config: (model config, settings, timing)."""
    model_cfg = to_model_config(node.model)
    cfg: BenchmarkConfig = job_config(node, BenchmarkConfig, leave_out=("model",))
    with process_runtime(cfg.device, cfg.threads) as ctx:
        torch.manual_seed(cfg.seed)
        network = build_model(model_cfg).to(ctx.device)
        # random weights may predict no object; memorise anyway so that the memory really fills
        settings = InferenceConfig(precision=cfg.precision, memorise_empty_frames=True)
        timing = time_streaming(
            network, model_cfg, (cfg.frame_size[0], cfg.frame_size[1]), cfg.num_objects, settings,
            repeats=cfg.repeats, warmup=cfg.warmup, seed=cfg.seed,
        )
    return model_cfg, cfg, timing
