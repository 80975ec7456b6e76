"""The GPU check behind ``scripts/gpu_check.py``: one run, under ten minutes on one GPU, that says
what the machine does with S3.

1. Inference: frames per second of the streaming engine for every model of ``models`` at
   ``size`` x ``size * aspect`` with a full memory (``s3.run.benchmark.time_steady_state``), every
   precision of ``precisions`` taking turns frame by frame.
2. Training: seconds per step and peak memory of ``train_model`` on random clips (``train_batch``
   clips of ``train_frames`` frames, ``train_crop`` square crops) per precision of
   ``train_precisions`` (fp16 with a GradScaler, as the trainer runs it).
3. DDP: one training step of the same model wrapped in DistributedDataParallel in a one-process
   group (NCCL on CUDA, gloo on the CPU), with its gradients checked.
4. Compiled inference (``compile``): step 1 again per model and precision with the network's parts
   compiled, for as long as ``budget_s`` allows (later timings are reported as skipped).

Every section logs as it finishes; a compiled setting that fails is reported with its error instead
of ending the check. On the CPU (tests) the same code runs with a tiny model and gloo.
"""

from __future__ import annotations

import logging
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any, Optional

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from s3.config import compose, load_model_config
from s3.config.inference import InferenceConfig
from s3.config.jobs import GpuCheckConfig, job_config
from s3.config.train import StageConfig
from s3.config.validation import ConfigError, first_line
from s3.model.compile import compile_network
from s3.model.precision import PRECISION_DTYPES, autocast
from s3.run.architectures import architecture, build_model
from s3.run.benchmark import describe_device, frame_shape, synchronize, time_steady_state
from s3.run.runtime import process_runtime
from s3.train.losses import clip_losses
from s3.train.optim import build_optimizer

logger = logging.getLogger(__name__)


@dataclass
class InferenceTiming:
    model: str
    precision: str
    compiled: bool
    fps: Optional[float] = None  # median over the timed frames
    setup_seconds: Optional[float] = None  # building the memory (and compiling, when compiled)
    note: str = ""  # why there is no fps (skipped, failed)


@dataclass
class TrainTiming:
    model: str
    precision: str
    seconds_per_step: float
    peak_memory_gib: Optional[float]  # CUDA only
    loss: float


@dataclass
class DdpTiming:
    backend: str
    seconds: float
    gradients_ok: bool


@dataclass
class GpuCheckResult:
    device: str
    inference: list[InferenceTiming] = field(default_factory=list)
    training: list[TrainTiming] = field(default_factory=list)
    ddp: Optional[DdpTiming] = None
    seconds: float = 0.0


def random_clips(
    batch: int, frames: int, crop: int, num_objects: int, device: torch.device, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random training clips: frames (B, T, 3, crop, crop) in [0, 1], labels (B, T, crop, crop) with a
    drifting box per object, selector (B, N) of ones."""
    images = torch.rand(batch, frames, 3, crop, crop, generator=generator)
    labels = torch.zeros(batch, frames, crop, crop, dtype=torch.int64)
    side = max(crop // 4, 1)
    for b in range(batch):
        for obj in range(1, num_objects + 1):
            top, left = torch.randint(0, crop - side + 1, (2,), generator=generator).tolist()
            for t in range(frames):
                y, x = min(top + t, crop - side), min(left + t, crop - side)
                labels[b, t, y : y + side, x : x + side] = obj
    return images.to(device), labels.to(device), torch.ones(batch, num_objects, device=device)


def training_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    clips: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    stage: StageConfig,
    precision: str,
    generator: torch.Generator,
) -> float:
    """One optimiser step on ``clips`` as the trainer takes it (autocast, losses, scaled backward);
    returns the total loss."""
    frames, labels, selector = clips
    device = frames.device
    with autocast(device, PRECISION_DTYPES[precision]):
        prediction = model(frames, labels[:, 0], selector, generator)
    num_objects = [selector.shape[1]] * frames.shape[0]
    losses = clip_losses(
        prediction.logits, prediction.sensory_logits, prediction.query_logits, labels[:, 1:], num_objects, stage.loss
    )
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(losses["total"]).backward()
    scaler.step(optimizer)
    scaler.update()
    return float(losses["total"].detach())


def _training_setup(cfg: GpuCheckConfig, device: torch.device, precision: str) -> tuple[Any, nn.Module, StageConfig]:
    model_cfg = load_model_config(cfg.train_model)
    torch.manual_seed(cfg.seed)
    network = build_model(model_cfg).to(device).train()
    stage = StageConfig(batch_size=cfg.train_batch, precision=precision)
    return model_cfg, network, stage


def time_training(cfg: GpuCheckConfig, device: torch.device, precision: str) -> TrainTiming:
    """Seconds per training step (median of ``train_steps`` after an untimed one) and peak memory."""
    model_cfg, network, stage = _training_setup(cfg, device, precision)
    model = architecture(model_cfg).clip_model(network, stage)
    optimizer = build_optimizer(network, stage.optim, amp=precision != "fp32")
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    generator = torch.Generator().manual_seed(cfg.seed)
    clips = random_clips(cfg.train_batch, cfg.train_frames, cfg.train_crop, cfg.num_objects, device, generator)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    seconds, loss = [], 0.0
    for step in range(1 + cfg.train_steps):
        synchronize(device)
        start = time.perf_counter()
        loss = training_step(model, optimizer, scaler, clips, stage, precision, generator)
        synchronize(device)
        if step:
            seconds.append(time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    return TrainTiming(cfg.train_model, precision, statistics.median(seconds), peak, loss)


def ddp_step(cfg: GpuCheckConfig, device: torch.device) -> DdpTiming:
    """One training step in DistributedDataParallel, in a one-process group of its own."""
    if dist.is_initialized():
        raise ConfigError("ddp: a process group is already open; run the check as one plain process, not under torchrun")
    backend = "nccl" if device.type == "cuda" else "gloo"
    precision = cfg.train_precisions[0] if cfg.train_precisions else "fp32"
    with tempfile.TemporaryDirectory() as rendezvous:
        dist.init_process_group(backend, init_method=f"file://{rendezvous}/group", rank=0, world_size=1)
        try:
            model_cfg, network, stage = _training_setup(cfg, device, precision)
            clip_model = architecture(model_cfg).clip_model(network, stage)
            model = DistributedDataParallel(clip_model, device_ids=[device.index] if device.type == "cuda" else None)
            optimizer = build_optimizer(network, stage.optim, amp=precision != "fp32")
            scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
            generator = torch.Generator().manual_seed(cfg.seed)
            clips = random_clips(cfg.train_batch, cfg.train_frames, cfg.train_crop, cfg.num_objects, device, generator)
            synchronize(device)
            start = time.perf_counter()
            training_step(model, optimizer, scaler, clips, stage, precision, generator)
            synchronize(device)
            seconds = time.perf_counter() - start
            trainable = [p for p in network.parameters() if p.requires_grad]
            gradients_ok = all(p.grad is not None and bool(torch.isfinite(p.grad).all()) for p in trainable)
        finally:
            dist.destroy_process_group()
    return DdpTiming(backend, seconds, gradients_ok)


def time_inference(
    cfg: GpuCheckConfig, name: str, device: torch.device, compiled: bool, deadline: float
) -> list[InferenceTiming]:
    """Inference fps of model ``name`` per precision: all at once, taking turns (eager), or one by one
    until ``deadline`` (``time.monotonic``) passes (compiled: each precision compiles anew)."""
    model_cfg = load_model_config(name)
    torch.manual_seed(cfg.seed)
    network = build_model(model_cfg).to(device).eval()
    frame = frame_shape(cfg.size, cfg.aspect)

    def settings(precision: str) -> InferenceConfig:
        return InferenceConfig(precision=precision, memorise_empty_frames=True, compile=compiled)

    def timed(precisions: list[str]) -> list[InferenceTiming]:
        start = time.perf_counter()
        runs = time_steady_state(
            network, model_cfg, frame, cfg.num_objects, [settings(p) for p in precisions], cfg.repeats, seed=cfg.seed
        )
        setup = time.perf_counter() - start - sum(sum(run.seconds) for run in runs)
        return [InferenceTiming(name, run.precision, compiled, 1 / run.median, setup) for run in runs]

    if not compiled:
        return timed(list(cfg.precisions))
    import torch._dynamo as dynamo  # loaded by the compiled section only

    compile_network(network, backend=cfg.compile_backend)
    timings = []
    for precision in cfg.precisions:
        if time.monotonic() > deadline:
            timings.append(InferenceTiming(name, precision, True, note=f"skipped: past budget_s={cfg.budget_s:g}"))
            continue
        try:
            timings += timed([precision])
        except Exception as err:  # a compiler failure is a finding of the check, not its end
            timings.append(InferenceTiming(name, precision, True, note=f"failed: {first_line(err)}"))
    dynamo.reset()
    return timings


def gpu_check(cfg: GpuCheckConfig) -> GpuCheckResult:
    """Every section of the check (see the module docstring), in order."""
    started = time.monotonic()
    deadline = started + cfg.budget_s
    with process_runtime(cfg.device, cfg.threads) as ctx:
        device = ctx.device
        result = GpuCheckResult(device=describe_device(device))
        for name in cfg.models:
            result.inference += time_inference(cfg, name, device, compiled=False, deadline=deadline)
            logger.info("inference %s done (%.0f s)", name, time.monotonic() - started)
        for precision in cfg.train_precisions:
            result.training.append(time_training(cfg, device, precision))
            logger.info("training step %s done (%.0f s)", precision, time.monotonic() - started)
        if cfg.ddp:
            result.ddp = ddp_step(cfg, device)
            logger.info("DDP step done (%.0f s)", time.monotonic() - started)
        if cfg.compile:
            for name in cfg.models:
                result.inference += time_inference(cfg, name, device, compiled=True, deadline=deadline)
                logger.info("compiled inference %s done (%.0f s)", name, time.monotonic() - started)
        if device.type == "cuda":
            torch.cuda.empty_cache()
    result.seconds = time.monotonic() - started
    return result


def gpu_check_from_args(argv: list[str]) -> GpuCheckResult:
    """The job on command-line overrides of ``configs/gpu_check.yaml`` (INFO logging of each section
    on stderr). Composed here rather than by ``@hydra.main``: each model's config is composed in turn."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return gpu_check(job_config(compose("gpu_check", argv), GpuCheckConfig))


def report(result: GpuCheckResult) -> str:
    """The check's printout."""
    lines = [f"device: {result.device}; torch {torch.__version__}; the whole check took {result.seconds:.0f} s"]
    if result.inference:
        lines.append("inference, full memory, frames per second (median) and set-up seconds (memory fill + compile):")
        lines.append(f"{'model':<12} {'precision':<9} {'eager fps':>10} {'compiled fps':>13} {'compile+fill s':>15}")
        eager = {(t.model, t.precision): t for t in result.inference if not t.compiled}
        compiled = {(t.model, t.precision): t for t in result.inference if t.compiled}
        for (model, precision), plain in eager.items():
            other = compiled.get((model, precision))
            fps = f"{plain.fps:.2f}" if plain.fps is not None else plain.note
            if other is None:
                compiled_fps, setup = "-", "-"
            elif other.fps is None:
                compiled_fps, setup = other.note, "-"
            else:
                compiled_fps, setup = f"{other.fps:.2f}", f"{other.setup_seconds:.0f}"
            lines.append(f"{model:<12} {precision:<9} {fps:>10} {compiled_fps:>13} {setup:>15}")
    if result.training:
        lines.append("training step (random clips), seconds per step (median) and peak memory:")
        for t in result.training:
            label = "fp16+GradScaler" if t.precision == "fp16" else t.precision
            memory = f"{t.peak_memory_gib:.1f} GiB" if t.peak_memory_gib is not None else "n/a (CPU)"
            lines.append(f"  {t.model} {label:<16} {t.seconds_per_step:8.3f} s/it   peak {memory}   loss {t.loss:.3f}")
    if result.ddp is not None:
        verdict = "gradients finite" if result.ddp.gradients_ok else "MISSING OR NON-FINITE GRADIENTS"
        lines.append(f"DDP, one process ({result.ddp.backend}): one step {result.ddp.seconds:.3f} s, {verdict}")
    return "\n".join(lines)
