"""The benchmark job behind ``scripts/benchmark.py``: how fast the streaming engine runs, where the
time goes, and whether long videos stay flat.

Steady state (``frames=0``, the default): a random video of ``size`` x ``size * aspect`` with
``num_objects`` objects goes through the architecture's engine, once per precision of
``precisions``, all in this process on the same frames: the first frame with its masks, memory
frames until the working memory is full (one per frame, to get there quickly), ``warmup`` untimed
frames (the first one counts the work, :func:`count_gflop`), then ``repeats`` timed frames on the
evaluation schedule (a memory frame every ``mem_every``-th frame). The precisions take turns frame
by frame, so a change of load on a shared machine hits them alike. A GEMM probe of the machine runs
first; ``profile=true`` adds the per-module table of the timed frames (:class:`ModuleTimer`).

Long video (``frames=N``): N frames on the evaluation schedule from the annotated first frame, the
precisions again taking turns; every ``window`` frames the median seconds per frame and the
process's resident memory are recorded, and their spread from the second window on is reported.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Optional

import torch
from omegaconf import DictConfig
from torch import nn

from s3.config import to_model_config
from s3.config.inference import InferenceConfig
from s3.config.jobs import BenchmarkConfig, job_config
from s3.model.compile import compile_network
from s3.model.precision import has_native_bf16
from s3.model.decoder import MaskDecoder
from s3.model.encoder.conv_ffn import ConvFFN
from s3.model.encoder.deformable_attention import MultiScaleDeformableAttention
from s3.model.encoder.resnet50 import ResNet50Encoder
from s3.model.encoder.semantic_attention import SemanticCrossAttention
from s3.model.encoder.spatial_prior import SpatialPriorModule
from s3.model.memory.key_projection import KeyProjection
from s3.model.memory.mask_encoder import MaskEncoder
from s3.model.memory.pixel_fuser import PixelFuser
from s3.model.memory.summarizer import ObjectSummarizer
from s3.model.query.transformer import QueryTransformer
from s3.run.architectures import build_model, make_processor
from s3.run.runtime import process_runtime

ASPECT_MULTIPLE = 8  # the frame width is size * aspect rounded to a multiple of this

# Rows of the profile, in order: label -> module classes timed under it (the ViT's blocks and patch
# embedding, and the engine's pixel-memory readout, are found separately; see ModuleTimer.attach).
PROFILE_MODULES: dict[str, tuple[type[nn.Module], ...]] = {
    "frozen ViT": (),
    "spatial prior": (SpatialPriorModule,),
    "pixel encoder (ResNet-50)": (ResNet50Encoder,),
    "deformable attention": (MultiScaleDeformableAttention,),
    "semantic attention": (SemanticCrossAttention,),
    "ConvFFN": (ConvFFN,),
    "key projection": (KeyProjection,),
    "memory readout": (),
    "pixel fusion": (PixelFuser,),
    "query transformer": (QueryTransformer,),
    "decoder": (MaskDecoder,),
    "mask encoder + summarizer": (MaskEncoder, ObjectSummarizer),
}
OTHER_ROW = "other (pyramid, projections, engine)"


def frame_shape(size: int, aspect: float) -> tuple[int, int]:
    """(H, W) of the benchmark frames: H = size, W = size * aspect rounded to a multiple of 8."""
    return size, max(ASPECT_MULTIPLE, round(size * aspect / ASPECT_MULTIPLE) * ASPECT_MULTIPLE)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def describe_device(device: torch.device) -> str:
    """What runs the job, in words."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            name = next(line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{name}, {torch.get_num_threads()} threads"


def resident_memory_mib() -> float:
    """The process's resident set size (Linux ``/proc``; elsewhere the peak from ``resource``)."""
    try:
        with open("/proc/self/statm") as statm:
            pages = int(statm.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def load_average() -> Optional[float]:
    """The 1-minute load average (None where the OS has none)."""
    try:
        with open("/proc/loadavg") as loadavg:
            return float(loadavg.read().split()[0])
    except OSError:
        return None


def gemm_probe(device: torch.device, dtypes: Sequence[torch.dtype], size: int = 2048, repeats: int = 5) -> dict[str, float]:
    """GFLOP/s of a size^3 matrix product per dtype (best of ``repeats``): what the machine can do.
    bf16 without hardware support (:func:`has_native_bf16`) is probed at 512^3 once: emulated, a
    2048^3 product can take a minute."""
    rates = {}
    for dtype in dtypes:
        label, n, tries = str(dtype).removeprefix("torch."), size, repeats
        if dtype == torch.bfloat16 and not has_native_bf16(device):
            label, n, tries = "bfloat16 (emulated, 512^3)", 512, 1
        a = torch.randn(n, n, device=device).to(dtype)
        b = torch.randn(n, n, device=device).to(dtype)
        best = float("inf")
        for _ in range(tries + 1):  # the first product warms the kernels up
            synchronize(device)
            start = time.perf_counter()
            a @ b
            synchronize(device)
            best = min(best, time.perf_counter() - start)
        rates[label] = 2 * n**3 / best / 1e9
    return rates


def count_gflop(step: Callable[[], Any]) -> float:
    """GFLOP of one call of ``step`` (matrix products, convolutions, attention: torch's FlopCounterMode,
    taught the CPU's fused attention kernel, which it does not count by itself)."""
    from torch.utils import flop_counter

    cpu_attention = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
    if cpu_attention not in flop_counter.flop_registry:

        def attention_flop(query_shape: Any, key_shape: Any, value_shape: Any, *_: Any, **__: Any) -> int:
            return flop_counter.sdpa_flop_count(query_shape, key_shape, value_shape)

        flop_counter.register_flop_formula(cpu_attention)(attention_flop)
    counter = flop_counter.FlopCounterMode(display=False)
    with counter:
        step()
    return counter.get_total_flops() / 1e9


class ModuleTimer:
    """Wall time per profile row (:data:`PROFILE_MODULES`) from forward hooks.

    Only the outermost timed call counts (a timed module inside another is part of it); on CUDA the
    device is synchronised at every boundary. ``active`` switches the recording on and off.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.active = False
        self.seconds: dict[str, float] = defaultdict(float)
        self._depth = 0
        self._start = 0.0

    def enter(self) -> None:
        if not self.active:
            return
        if self._depth == 0:
            synchronize(self.device)
            self._start = time.perf_counter()
        self._depth += 1

    def leave(self, label: str) -> None:
        if not self.active:
            return
        self._depth -= 1
        if self._depth == 0:
            synchronize(self.device)
            self.seconds[label] += time.perf_counter() - self._start

    def timed(self, label: str, function: Callable[..., Any]) -> Callable[..., Any]:
        """``function`` wrapped so that its calls count under ``label``."""

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            self.enter()
            try:
                return function(*args, **kwargs)
            finally:
                self.leave(label)

        return wrapper

    def watch(self, module: nn.Module, label: str) -> None:
        module.register_forward_pre_hook(lambda *_: self.enter())
        module.register_forward_hook(lambda *_: self.leave(label))

    def attach(self, network: nn.Module, processor: Any) -> None:
        """Hook every profiled module of ``network`` and the engine's pixel-memory readout."""
        from s3.model.backbone.vit import FrozenViT

        for module in network.modules():
            if isinstance(module, FrozenViT):
                for part in (module.patch_embed, *module.blocks, module.norm):
                    self.watch(part, "frozen ViT")
                continue
            for label, classes in PROFILE_MODULES.items():
                if classes and isinstance(module, classes):
                    self.watch(module, label)
        memory = getattr(processor, "memory", None)
        if memory is not None and hasattr(memory, "read"):
            memory.read = self.timed("memory readout", memory.read)


@dataclass
class PrecisionRun:
    """The timings of one precision."""

    precision: str
    seconds: list[float] = field(default_factory=list)  # one per timed frame
    memorised: list[bool] = field(default_factory=list)  # whether each timed frame was a memory frame
    profile: dict[str, float] = field(default_factory=dict)  # row -> milliseconds per timed frame
    gflop: Optional[float] = None  # work of one steady non-memory frame
    peak_memory_mib: Optional[float] = None  # CUDA only
    memory_tokens: list[int] = field(default_factory=list)  # long video: pixel-memory tokens per window

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)


@dataclass
class BenchmarkResult:
    """Everything the job measured."""

    model: str
    frame: tuple[int, int]
    device: str
    settings: InferenceConfig
    runs: list[PrecisionRun]
    gemm_gflops: dict[str, float]
    load_before: Optional[float]
    load_after: Optional[float]
    window: int = 0  # long video: frames per window (0: steady state)
    rss_mib: list[float] = field(default_factory=list)  # long video: resident memory at each window's end


def _random_video(frame: tuple[int, int], num_objects: int, device: torch.device, seed: int) -> tuple[Any, Any]:
    """(first mask (H, W) with ids 0..num_objects, a function giving the next random frame (3, H, W))."""
    generator = torch.Generator().manual_seed(seed)
    first_mask = torch.randint(0, num_objects + 1, frame, generator=generator).to(device)

    def next_frame() -> torch.Tensor:
        return torch.rand(3, *frame, generator=generator).to(device)

    return first_mask, next_frame


def _timed_step(processor: Any, image: torch.Tensor, device: torch.device) -> tuple[float, bool]:
    synchronize(device)
    start = time.perf_counter()
    prediction = processor.step(image)
    synchronize(device)
    return time.perf_counter() - start, bool(prediction.memorised)


def _memory_tokens(processor: Any) -> int:
    memory = getattr(processor, "memory", None)
    return int(getattr(memory, "num_tokens", 0))


@contextmanager
def _cuda_peak(device: torch.device, run: PrecisionRun) -> Iterator[None]:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    yield
    if device.type == "cuda":
        run.peak_memory_mib = max(run.peak_memory_mib or 0.0, torch.cuda.max_memory_allocated(device) / 2**20)


def time_steady_state(
    network: nn.Module,
    model_cfg: Any,
    frame: tuple[int, int],
    num_objects: int,
    settings: Sequence[InferenceConfig],
    repeats: int,
    warmup: int = 1,
    seed: int = 0,
    profile: bool = False,
) -> list[PrecisionRun]:
    """Seconds per steady-state frame with a full working memory, one run per entry of ``settings``
    (see the module docstring); with ``profile``, the per-module milliseconds of the timed frames."""
    device = next(network.parameters()).device
    first_mask, next_frame = _random_video(frame, num_objects, device, seed)
    processors = [make_processor(network, model_cfg, s) for s in settings]
    runs = [PrecisionRun(s.precision) for s in settings]
    timers = []
    for processor in processors:
        timer = ModuleTimer(device)
        if profile:
            timer.attach(network, processor)
        timers.append(timer)

    image = next_frame()
    for processor in processors:
        processor.step(image, first_mask)
        processor.update_config(mem_every=1)
    for _ in range(settings[0].max_mem_frames - 1):  # fill the working memory
        image = next_frame()
        for processor in processors:
            processor.step(image)
    for processor, config in zip(processors, settings):
        processor.update_config(mem_every=config.mem_every)
    for index in range(warmup):
        image = next_frame()
        for processor, run in zip(processors, runs):
            if index == 0:
                run.gflop = count_gflop(lambda: processor.step(image))
            else:
                processor.step(image)
    for _ in range(repeats):
        image = next_frame()
        for processor, run, timer in zip(processors, runs, timers):
            timer.active = profile
            with _cuda_peak(device, run):
                seconds, memorised = _timed_step(processor, image, device)
            timer.active = False
            run.seconds.append(seconds)
            run.memorised.append(memorised)
    for run, timer in zip(runs, timers):
        if profile:
            total = sum(run.seconds)
            timed = {label: timer.seconds.get(label, 0.0) for label in PROFILE_MODULES}
            timed[OTHER_ROW] = total - sum(timed.values())
            run.profile = {label: 1000 * s / repeats for label, s in timed.items()}
    return runs


def time_long_video(
    network: nn.Module,
    model_cfg: Any,
    frame: tuple[int, int],
    num_objects: int,
    settings: Sequence[InferenceConfig],
    frames: int,
    window: int,
    seed: int = 0,
) -> tuple[list[PrecisionRun], list[float]]:
    """Seconds of every frame of a ``frames``-frame video per entry of ``settings`` (the first frame
    annotated, then the evaluation schedule) and the resident memory (MiB) after every ``window``
    frames; the pixel-memory tokens per window are in each run's ``memory_tokens``."""
    device = next(network.parameters()).device
    first_mask, next_frame = _random_video(frame, num_objects, device, seed)
    processors = [make_processor(network, model_cfg, s) for s in settings]
    runs = [PrecisionRun(s.precision) for s in settings]
    rss = []
    image = next_frame()
    for processor, run in zip(processors, runs):
        synchronize(device)
        start = time.perf_counter()
        processor.step(image, first_mask)
        synchronize(device)
        run.seconds.append(time.perf_counter() - start)
        run.memorised.append(True)
    for index in range(1, frames):
        image = next_frame()
        for processor, run in zip(processors, runs):
            with _cuda_peak(device, run):
                seconds, memorised = _timed_step(processor, image, device)
            run.seconds.append(seconds)
            run.memorised.append(memorised)
        if (index + 1) % window == 0 or index + 1 == frames:
            rss.append(resident_memory_mib())
            for processor, run in zip(processors, runs):
                run.memory_tokens.append(_memory_tokens(processor))
    return runs, rss


def automatic_precisions(device: torch.device) -> list[str]:
    """``precisions=null``: fp32, plus the reduced precisions ``device`` runs in hardware (an emulated
    bf16, as on an AVX2-only CPU, is many times slower than fp32 and would only stretch the run)."""
    precisions = ["fp32"]
    if has_native_bf16(device):
        precisions.append("bf16")
    if device.type == "cuda":
        precisions.append("fp16")
    return precisions


def inference_settings(cfg: BenchmarkConfig, precision: str) -> InferenceConfig:
    # random weights may predict no object; memorise anyway so that the memory really fills
    return InferenceConfig(
        precision=precision,
        memorise_empty_frames=True,
        top_k=cfg.top_k,
        mem_every=cfg.mem_every,
        max_mem_frames=cfg.max_mem_frames,
        use_long_term=cfg.long_term,
        compile=cfg.compile,
    )


def benchmark_from_config(node: DictConfig) -> BenchmarkResult:
    """The job on a composed ``benchmark`` config."""
    model_cfg = to_model_config(node.model)
    cfg: BenchmarkConfig = job_config(node, BenchmarkConfig, leave_out=("model",))
    frame = frame_shape(cfg.size, cfg.aspect)
    with process_runtime(cfg.device, cfg.threads) as ctx:
        precisions = cfg.precisions or automatic_precisions(ctx.device)
        settings = [inference_settings(cfg, precision) for precision in precisions]
        torch.manual_seed(cfg.seed)
        network = build_model(model_cfg).to(ctx.device).eval()
        if cfg.compile:
            compile_network(network)
        load_before = load_average()
        dtypes = [torch.float32, torch.bfloat16] + ([torch.float16] if ctx.device.type == "cuda" else [])
        gemm = gemm_probe(ctx.device, dtypes) if cfg.gemm_probe else {}
        rss: list[float] = []
        if cfg.frames:
            runs, rss = time_long_video(
                network, model_cfg, frame, cfg.num_objects, settings, cfg.frames, cfg.window, cfg.seed
            )
        else:
            runs = time_steady_state(
                network, model_cfg, frame, cfg.num_objects, settings, cfg.repeats, cfg.warmup, cfg.seed, cfg.profile
            )
        return BenchmarkResult(
            model=model_cfg.name,
            frame=frame,
            device=describe_device(ctx.device),
            settings=settings[0],
            runs=runs,
            gemm_gflops=gemm,
            load_before=load_before,
            load_after=load_average(),
            window=cfg.window if cfg.frames else 0,
            rss_mib=rss,
        )


def _spread(values: Sequence[float]) -> float:
    """max / min of positive values (1.0 = perfectly flat)."""
    return max(values) / min(values) if values and min(values) > 0 else float("nan")


def report(result: BenchmarkResult) -> str:
    """The benchmark's printout."""
    s = result.settings
    h, w = result.frame
    memory = (
        f"memory every {s.mem_every} frames, {s.max_mem_frames} working frames, top-k {s.top_k}, "
        f"long-term {'on' if s.use_long_term else 'off'}, compile {'on' if s.compile else 'off'}"
    )
    loads = "n/a" if result.load_before is None else f"{result.load_before:.2f} -> {result.load_after:.2f}"
    lines = [f"model={result.model} frame={h}x{w} device: {result.device}; {memory}; load average {loads}"]
    if result.gemm_gflops:
        probe = ", ".join(f"{dtype} {rate:.0f}" for dtype, rate in result.gemm_gflops.items())
        lines.append(f"GEMM probe (2048^3, GFLOP/s): {probe}")
    if result.window:
        lines += _long_video_lines(result)
    else:
        lines += _steady_state_lines(result)
    for run in result.runs:
        if run.peak_memory_mib is not None:
            lines.append(f"peak CUDA memory ({run.precision}): {run.peak_memory_mib:.0f} MiB")
    return "\n".join(lines)


def _steady_state_lines(result: BenchmarkResult) -> list[str]:
    base = result.runs[0].median
    lines = [
        f"{'precision':<10} {'median s/frame':>14} {'min-max':>13} {'fps':>6} {'GFLOP/frame':>11} "
        f"{'GFLOP/s':>8} {'time vs ' + result.runs[0].precision:>12}"
    ]
    for run in result.runs:
        gflop = f"{run.gflop:.0f}" if run.gflop is not None else "-"
        rate = f"{run.gflop / run.median:.0f}" if run.gflop is not None else "-"
        lines.append(
            f"{run.precision:<10} {run.median:>14.3f} {min(run.seconds):>6.3f}-{max(run.seconds):<6.3f} "
            f"{1 / run.median:>6.2f} {gflop:>11} {rate:>8} {run.median / base:>11.2f}x"
        )
    memory_frames = sum(result.runs[0].memorised)
    lines.append(
        f"over {len(result.runs[0].seconds)} timed frames each ({memory_frames} memory frames), the precisions "
        "taking turns; GFLOP: one non-memory frame (matrix products, convolutions, attention)"
    )
    if result.runs[0].profile:
        lines.append("per-module time, mean over the timed frames (ms per frame and share):")
        header = f"{'module':<38}" + "".join(f" {run.precision + ' ms':>10} {'%':>5}" for run in result.runs)
        lines.append(header)
        totals = [sum(run.profile.values()) for run in result.runs]
        for label in result.runs[0].profile:
            cells = "".join(
                f" {run.profile[label]:>10.1f} {100 * run.profile[label] / total:>5.1f}"
                for run, total in zip(result.runs, totals)
            )
            lines.append(f"{label:<38}{cells}")
        lines.append(f"{'total':<38}" + "".join(f" {total:>10.1f} {100.0:>5.1f}" for total in totals))
    return lines


def _long_video_lines(result: BenchmarkResult) -> list[str]:
    window = result.window
    frames = len(result.runs[0].seconds)
    lines = [
        f"{frames} frames; per window of {window}: median seconds per frame, resident memory at its end, "
        "pixel-memory tokens"
    ]
    header = f"{'frames':<12}" + "".join(f" {run.precision + ' s':>10}" for run in result.runs)
    lines.append(header + f" {'RSS MiB':>9} {'tokens':>8}")
    medians: list[list[float]] = [[] for _ in result.runs]
    for index, rss in enumerate(result.rss_mib):
        start, stop = index * window, min((index + 1) * window, frames)
        cells = ""
        for run, series in zip(result.runs, medians):
            series.append(statistics.median(run.seconds[start:stop]))
            cells += f" {series[-1]:>10.4f}"
        tokens = result.runs[-1].memory_tokens[index] if result.runs[-1].memory_tokens else 0
        lines.append(f"{f'{start + 1}-{stop}':<12}{cells} {rss:>9.0f} {tokens:>8}")
    if len(result.rss_mib) > 1:
        flat = ", ".join(f"time {_spread(series[1:]):.3f} ({run.precision})" for run, series in zip(result.runs, medians))
        lines.append(f"max/min over the windows after the first: {flat}, RSS {_spread(result.rss_mib[1:]):.3f}")
    return lines
