"""Timing of the network's per-frame inference step (``scripts/benchmark.py``)."""

from __future__ import annotations

import statistics
import time
from contextlib import nullcontext
from dataclasses import dataclass

import torch

from s3.model.network import S3Network
from s3.model.padding import pad_to_multiple
from s3.model.summary import memorise_frame, segment_frame


@dataclass
class FrameTiming:
    seconds: list[float]
    peak_memory_mib: float | None  # CUDA only

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def fps(self) -> float:
        return 1.0 / self.median


def time_inference_step(
    network: S3Network,
    frame_size: tuple[int, int],
    num_objects: int,
    repeats: int = 3,
    warmup: int = 1,
    amp_dtype: torch.dtype | None = None,
) -> FrameTiming:
    """Median wall time of one inference step (encode the frame, read a one-frame memory, query
    transformer, decode) for a random frame of ``frame_size`` with ``num_objects`` objects."""
    device = next(network.parameters()).device
    image = torch.rand(1, 3, *frame_size, device=device)
    image, _ = pad_to_multiple(image, network.cfg.pad_multiple)
    masks = (torch.rand(1, num_objects, *image.shape[-2:], device=device) > 0.5).float()
    autocast = torch.autocast(device.type, dtype=amp_dtype) if amp_dtype is not None else nullcontext()
    network.eval()
    cuda = device.type == "cuda"
    with torch.inference_mode(), autocast:
        memory = memorise_frame(network, image, masks)
        for _ in range(warmup):
            segment_frame(network, image, memory)
        if cuda:
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
        seconds = []
        for _ in range(repeats):
            start = time.perf_counter()
            segment_frame(network, image, memory)
            if cuda:
                torch.cuda.synchronize(device)
            seconds.append(time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if cuda else None
    return FrameTiming(seconds, peak)
