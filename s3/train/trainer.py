"""The training loop: stages in order, the max-skip curriculum, AMP, gradient clipping, logs and
checkpoints, on one process or under ``torchrun`` (DDP).

One iteration: the next batch of clips (a deterministic, resumable order: ``DistributedSampler``
by seed and epoch, started part-way through an epoch after a resume) -> the recurrent clip forward
(:mod:`s3.train.recurrent`, under autocast on CUDA) -> point-sampled losses -> backward (scaled for
fp16) -> unscale, clip the gradient norm -> AdamW step -> per-iteration LR schedule step.

The trainer is architecture-neutral: the network and its clip forward come from the caller's
``architecture`` (``s3.run.architectures``: ``build_network(model_cfg)`` and
``clip_model(network, stage)``), and the process it runs in (device, threads, torchrun's group)
from the caller's runtime (``fit(ctx)``).

The dataset of a stage is rebuilt whenever the curriculum max skip (``max_skip_schedule`` at
``max_skip_fractions`` of the stage's iterations) changes; each rebuild or exhausted pass starts a
new epoch. The data position (epoch, batches consumed in it, its max skip) is saved in every
checkpoint with the optimiser, scheduler, grad scaler and all RNG states (of every process), so
that a resumed run continues bit-for-bit where the interrupted one was (CPU, deterministic
algorithms, same number of processes).

Checkpoints are written every ``train.checkpoint_interval`` iterations, at the end of every stage
and when the process is asked to stop (SIGTERM / SIGINT, at the next iteration boundary). A crash
in the middle of an iteration writes nothing: its state is half-updated; resume from the last
periodic checkpoint.
"""

from __future__ import annotations

import logging
import math
import random
import signal
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, Callable, Iterator, Optional, Protocol

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from s3.config.data import DataConfig
from s3.config.structured import to_dataclass
from s3.config.train import StageConfig, TrainConfig
from s3.config.validation import ConfigError, InputError, first_line
from s3.data.build import build_train_dataset
from s3.data.sampling import max_skip_at
from s3.model.compile import compile_network
from s3.model.precision import PRECISION_DTYPES, autocast
from s3.model.weights import CheckpointError, atomic_save, load_strict, trainable_state_dict
from s3.train.checkpoint import (
    capture_rng_state,
    checkpoint_path,
    find_latest_checkpoint,
    load_checkpoint,
    prune_checkpoints,
    restore_rng_state,
    weights_path,
)
from s3.train.distributed import (
    DistributedContext,
    ResumableDistributedSampler,
    all_reduce_mean,
    any_process,
    convert_training_batchnorms,
    gather_objects,
    wrap_ddp,
)
from s3.train.logging import RunLogging, ScalarWriter, clip_grid, format_scalars
from s3.train.losses import clip_losses
from s3.train.optim import build_optimizer, build_scheduler
from s3.train.recurrent import ClipPrediction

logger = logging.getLogger(__name__)

DatasetBuilder = Callable[[DataConfig, int, int], Dataset]  # (cfg, max_skip, seed) -> clips
RANK_SEED_STRIDE = 1000  # process r seeds its RNGs with seed + 1000 r + (stage index, start iteration)
CHECKPOINT_FORMAT = 1


def stage_data_config(data_node: DictConfig | dict[str, Any], stage: StageConfig) -> DataConfig:
    """The validated data config of a stage: the top-level ``data`` node (interpolations resolved in
    its own config) with ``stage.data`` merged on."""
    if isinstance(data_node, DictConfig):
        data_node = OmegaConf.to_container(data_node, resolve=True)  # type: ignore[assignment]
    merged = OmegaConf.merge(OmegaConf.create(data_node), OmegaConf.create(stage.data))
    return to_dataclass(merged, DataConfig, "data")


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's (CPU and CUDA) global RNGs."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def frozen_checksum(network: nn.Module) -> float:
    """Sum of |w| over the frozen parameters: ties a checkpoint to the frozen ViT it was trained with."""
    return float(sum(p.detach().double().abs().sum().item() for p in network.parameters() if not p.requires_grad))


@dataclass
class DataPosition:
    """Where a stage is in its data: the epoch, the batches of it already used, its max skip."""

    epoch: int
    batch_index: int
    max_skip: int


@dataclass
class StageReport:
    """What one stage did in this process."""

    name: str
    start_iteration: int
    end_iteration: int
    finished: bool
    loss_log: list[tuple[int, float]] = field(default_factory=list)  # (iteration, mean total loss since last log)
    clips_per_second: float = 0.0  # global clips per second, first iteration (warm-up) excluded


@dataclass
class StageRun:
    """The live state of the stage being trained."""

    index: int
    stage: StageConfig
    global_offset: int  # iterations of the earlier stages
    model: nn.Module  # RecurrentClipModel, DDP-wrapped when distributed
    amp_dtype: Optional[torch.dtype]  # None: no autocast
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    generator: torch.Generator  # memory-frame draws and deep-update coins
    stream: "ClipStream"
    iteration: int = 0  # iterations of this stage done


class ClipStream:
    """A stage's batches in a deterministic order that can be resumed at any iteration.

    The dataset is rebuilt when the curriculum max skip changes; every rebuild or exhausted pass
    starts a new epoch (``dataset.set_epoch`` and ``sampler.set_epoch``). Loader workers are
    started afresh each epoch so that they see the epoch.
    """

    def __init__(
        self,
        data_cfg: DataConfig,
        stage: StageConfig,
        build_dataset: DatasetBuilder,
        ctx: DistributedContext,
        seed: int,
        num_workers: int,
    ) -> None:
        self.data_cfg = data_cfg
        self.stage = stage
        self.build_dataset = build_dataset
        self.ctx = ctx
        self.seed = seed
        self.num_workers = num_workers
        self.local_batch = stage.batch_size // ctx.world_size
        self.position = DataPosition(epoch=0, batch_index=0, max_skip=self.max_skip(0))  # replaced on resume
        self.loader: Optional[DataLoader] = None
        self.loader_max_skip: Optional[int] = None
        self.iterator: Optional[Iterator[dict[str, Any]]] = None

    def max_skip(self, iteration: int) -> int:
        return max_skip_at(
            iteration, self.stage.num_iterations, self.stage.max_skip_schedule, self.stage.max_skip_fractions
        )

    @property
    def batches_per_epoch(self) -> int:
        assert self.loader is not None
        return self.loader.sampler.num_samples // self.local_batch

    def _build_loader(self, max_skip: int) -> None:
        dataset = self.build_dataset(self.data_cfg, max_skip, self.seed)
        sampler = ResumableDistributedSampler(dataset, self.ctx.world_size, self.ctx.rank, self.seed)
        if sampler.num_samples < self.local_batch:
            raise ConfigError(
                f"stage {self.stage.name}: the dataset has {len(dataset)} clips, fewer than one batch of "
                f"{self.stage.batch_size} over {self.ctx.world_size} processes"
            )
        self.loader = DataLoader(
            dataset,
            batch_size=self.local_batch,
            sampler=sampler,
            num_workers=self.num_workers,
            pin_memory=self.ctx.device.type == "cuda",
            drop_last=True,
            generator=torch.Generator(),  # worker seeds come from here, never from the global RNG
        )
        self.loader_max_skip = max_skip

    def _open_epoch(self) -> None:
        if self.loader is None or self.loader_max_skip != self.position.max_skip:
            self._build_loader(self.position.max_skip)
        assert self.loader is not None
        if self.position.batch_index >= self.batches_per_epoch:  # resumed right at the end of an epoch
            self.position = DataPosition(self.position.epoch + 1, 0, self.position.max_skip)
        epoch = self.position.epoch
        self.loader.dataset.set_epoch(epoch)
        self.loader.sampler.set_epoch(epoch)
        self.loader.sampler.set_start_index(self.position.batch_index * self.local_batch)
        self.loader.generator.manual_seed(self.seed + epoch)
        self.iterator = iter(self.loader)

    def next_batch(self, iteration: int) -> dict[str, Any]:
        """The batch of (0-based) ``iteration``; advances the data position."""
        max_skip = self.max_skip(iteration)
        epoch_done = self.iterator is not None and self.position.batch_index >= self.batches_per_epoch
        if max_skip != self.position.max_skip or epoch_done:
            if max_skip != self.position.max_skip:
                logger.info("stage %s: max skip %d from iteration %d", self.stage.name, max_skip, iteration)
            self.position = DataPosition(self.position.epoch + 1, 0, max_skip)
            self.iterator = None
        if self.iterator is None:
            self._open_epoch()
        assert self.iterator is not None
        batch = next(self.iterator)
        self.position.batch_index += 1
        return batch


class IntervalMeter:
    """Sums of the loss terms and the grad norm between two log lines, plus the elapsed time."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.sums: dict[str, Tensor] = {}
        self.count = 0
        self.start = time.perf_counter()

    def add(self, values: dict[str, Tensor]) -> None:
        for name, value in values.items():
            value = value.detach().float()
            self.sums[name] = self.sums[name] + value if name in self.sums else value
        self.count += 1

    def averages(self) -> dict[str, float]:
        return {name: float(total) / self.count for name, total in self.sums.items()}

    def elapsed(self) -> float:
        return time.perf_counter() - self.start


class StopRequest:
    """Turns SIGTERM / SIGINT into a request to stop at the next iteration boundary (a second
    signal interrupts at once). Signal handlers can only be installed from the main thread."""

    def __init__(self) -> None:
        self.requested = False
        self.previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Optional[FrameType]) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        logger.warning("signal %d: stopping after this iteration with a checkpoint", signum)

    def install(self) -> None:
        self.requested = False
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self.previous[sig] = signal.signal(sig, self._handle)

    def uninstall(self) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        self.previous.clear()


class TrainableArchitecture(Protocol):
    """What the trainer needs of a model architecture (``s3.run.architectures.Architecture``)."""

    build_network: Callable[[Any], nn.Module]  # model config -> network with its weight files loaded
    clip_model: Callable[[nn.Module, StageConfig], nn.Module]  # (network, stage) -> the clip forward


class Trainer:
    """Runs the stages of ``train_cfg`` on the network of ``model_cfg``.

    ``architecture`` builds the network and its clip forward; ``data_node`` is the top-level
    ``data`` config (each stage merges its ``data`` overrides on it); ``run_config`` is the
    resolved YAML of the whole run, saved in the run directory; ``build_dataset`` makes a stage's
    dataset (``s3.data.build.build_train_dataset`` by default). After :meth:`fit`, ``network``
    holds the trained network.
    """

    def __init__(
        self,
        architecture: TrainableArchitecture,
        model_cfg: Any,
        train_cfg: TrainConfig,
        data_node: DictConfig | dict[str, Any],
        run_config: str,
        build_dataset: DatasetBuilder = build_train_dataset,
    ) -> None:
        self.architecture = architecture
        self.model_cfg = model_cfg
        self.cfg = train_cfg
        self.data_cfgs = [stage_data_config(data_node, stage) for stage in train_cfg.stages]
        self.run_config = run_config
        self.build_dataset = build_dataset
        self.run_dir = Path(train_cfg.run_dir)
        self.network: Optional[nn.Module] = None
        self.stop = StopRequest()

    # ------------------------------------------------------------------ the run
    def fit(self, ctx: DistributedContext) -> list[StageReport]:
        """Train every stage not finished yet (resuming per ``train.resume``) in the process ``ctx``
        describes (``s3.run.runtime.process_runtime``); one report per stage run."""
        run_logging = RunLogging(self.run_dir, ctx.rank)
        writer = ScalarWriter(self.run_dir, ctx.is_main)
        self.stop.install()
        try:
            return self._fit(ctx, writer)
        except (InputError, OSError) as err:  # a bad setting or file, a full disk: one line is the whole story
            logger.error("training stopped: %s", first_line(err))
            raise
        except Exception:
            logger.exception("training failed")
            raise
        finally:
            self.stop.uninstall()
            writer.close()
            run_logging.close()

    def _fit(self, ctx: DistributedContext, writer: ScalarWriter) -> list[StageReport]:
        cfg = self.cfg
        for i, stage in enumerate(cfg.stages):
            if stage.batch_size % ctx.world_size:
                raise ConfigError(
                    f"train.stages.{i}.batch_size={stage.batch_size} is not divisible by the "
                    f"{ctx.world_size} processes (the batch size is global)"
                )
            data, multiple = self.data_cfgs[i], self.model_cfg.pad_multiple
            key, crop = ("data.static.crop_size", data.static.crop_size) if data.static.enabled else (
                "data.crop_size", data.crop_size)
            if crop % multiple:
                raise ConfigError(
                    f"{key}={crop} (stage {stage.name}) is not a multiple of model.pad_multiple={multiple}"
                )
        resume = self._resume_state()
        seed_everything(cfg.seed)  # the same initial weights on every process
        network = self.architecture.build_network(self.model_cfg).to(ctx.device)
        if resume is not None:
            self._load_network(network, resume)
        synced = False
        if ctx.is_distributed and ctx.device.type == "cuda" and cfg.sync_batchnorm:
            synced = convert_training_batchnorms(network) > 0
        if cfg.compile:
            compile_network(network)
        self.network = network
        self._log_start(ctx, writer, network, resume)

        first = 0
        if resume is not None:
            first = int(resume["stage_index"])
            if int(resume["iteration"]) >= cfg.stages[first].num_iterations:  # that stage is done
                first, resume = first + 1, None
        reports = []
        for index in range(first, len(cfg.stages)):
            report = self._run_stage(ctx, writer, network, index, resume, synced)
            resume = None
            reports.append(report)
            if not report.finished:
                break
        if first >= len(cfg.stages):
            logger.info("every stage of %s is finished already; nothing to do", self.run_dir)
        return reports

    def _resume_state(self) -> Optional[dict[str, Any]]:
        """The checkpoint to resume from (per ``train.resume``), or None for a fresh start."""
        choice = self.cfg.resume
        if choice == "none":
            existing = find_latest_checkpoint(self.run_dir)
            if existing is not None:
                raise ConfigError(
                    f"train.run_dir={self.run_dir} already holds checkpoints ({existing.name}); "
                    "continue it with train.resume=auto or start a new train.exp_id"
                )
            return None
        path = find_latest_checkpoint(self.run_dir) if choice == "auto" else Path(choice).expanduser()
        if path is None:
            logger.info("train.resume=auto: no checkpoint in %s, starting fresh", self.run_dir)
            return None
        state = load_checkpoint(path)
        names = [s.name for s in self.cfg.stages]
        index = int(state["stage_index"])
        if index >= len(names) or names[index] != state["stage_name"]:
            raise CheckpointError(
                f"train.resume: {path} is from stage {state['stage_name']!r} (#{index}), "
                f"which train.stages={names} does not have at that position"
            )
        logger.info("resuming from %s (stage %s, iteration %d)", path, state["stage_name"], state["iteration"])
        return state

    def _load_network(self, network: nn.Module, state: dict[str, Any]) -> None:
        frozen = tuple(name for name, p in network.named_parameters() if not p.requires_grad)
        load_strict(network, state["network"], "train.resume (network)", allow_missing=frozen)
        expected, actual = float(state["frozen_checksum"]), frozen_checksum(network)
        if not math.isclose(expected, actual, rel_tol=1e-6, abs_tol=1e-6):
            raise CheckpointError(
                "train.resume: the frozen ViT differs from the one the checkpoint was trained with "
                f"(checksum {actual:.6g} vs {expected:.6g}); check model.backbone.weights"
            )

    def _log_start(
        self, ctx: DistributedContext, writer: ScalarWriter, network: nn.Module, resume: Optional[dict[str, Any]]
    ) -> None:
        trainable = sum(p.numel() for p in network.parameters() if p.requires_grad)
        frozen = sum(p.numel() for p in network.parameters() if not p.requires_grad)
        logger.info(
            "run %s: %d process(es), device %s, torch %s; model %s with %d trainable and %d frozen parameters",
            self.run_dir, ctx.world_size, ctx.device, torch.__version__, self.model_cfg.name, trainable, frozen,
        )
        if not ctx.is_main:
            return
        config_file = self.run_dir / "config.yaml"
        if resume is None or not config_file.is_file():
            config_file.write_text(self.run_config)
        elif config_file.read_text() != self.run_config:
            changed = self.run_dir / f"config.resume-{int(resume['global_iteration']):08d}.yaml"
            changed.write_text(self.run_config)
            logger.warning("the resumed run's config differs from config.yaml; saved it as %s", changed.name)
        writer.text("config", f"```\n{self.run_config}\n```")
        writer.text("parameters", f"trainable {trainable:,}, frozen {frozen:,}")

    # ------------------------------------------------------------------ one stage
    def _start_stage(
        self,
        ctx: DistributedContext,
        network: nn.Module,
        index: int,
        resume: Optional[dict[str, Any]],
        synced_batchnorm: bool,
    ) -> StageRun:
        """Model wrapper, optimiser, schedule, scaler, coin generator and data of stage ``index``,
        fresh (seeded per process) or restored from ``resume``."""
        cfg, stage = self.cfg, self.cfg.stages[index]
        amp_dtype = PRECISION_DTYPES[self._stage_precision(index, ctx)]
        clip_model = self.architecture.clip_model(network, stage)
        model = wrap_ddp(clip_model, ctx, synced_batchnorm)
        optimizer = build_optimizer(network, stage.optim, amp=amp_dtype is not None)
        run = StageRun(
            index=index,
            stage=stage,
            global_offset=sum(s.num_iterations for s in cfg.stages[:index]),
            model=model,
            amp_dtype=amp_dtype,
            optimizer=optimizer,
            scheduler=build_scheduler(optimizer, stage.optim, stage.num_iterations),
            scaler=torch.amp.GradScaler(
                ctx.device.type, init_scale=cfg.grad_scaler_init_scale, enabled=amp_dtype == torch.float16
            ),
            generator=torch.Generator(),
            stream=ClipStream(self.data_cfgs[index], stage, self.build_dataset, ctx, cfg.seed, cfg.num_workers),
        )
        if resume is None:
            self._seed_stage(run, ctx, 0)
            return run
        run.optimizer.load_state_dict(resume["optimizer"])
        run.scheduler.load_state_dict(resume["scheduler"])
        run.scaler.load_state_dict(resume["scaler"])
        run.iteration = int(resume["iteration"])
        run.stream.position = DataPosition(**resume["data_position"])
        if len(resume["rng"]) == ctx.world_size:
            restore_rng_state(resume["rng"][ctx.rank], run.generator)
        else:
            logger.warning(
                "the checkpoint was written by %d processes, this run has %d: reseeding and starting a new epoch",
                len(resume["rng"]), ctx.world_size,
            )
            self._seed_stage(run, ctx, run.iteration)
            position = run.stream.position
            run.stream.position = DataPosition(position.epoch + 1, 0, position.max_skip)
        return run

    def _stage_precision(self, index: int, ctx: DistributedContext) -> str:
        """The stage's precision (its own, else ``train.precision``); fp16 needs CUDA, so a CPU run
        trains an fp16 stage in fp32 (and says so)."""
        precision = self.cfg.stages[index].precision or self.cfg.precision
        if precision == "fp16" and ctx.device.type != "cuda":
            logger.warning("stage %s: precision fp16 needs CUDA; training in fp32 on %s",
                           self.cfg.stages[index].name, ctx.device)
            return "fp32"
        return precision

    def _seed_stage(self, run: StageRun, ctx: DistributedContext, iteration: int) -> None:
        """Seed the global RNGs and the coin generator, differently per process, stage and start."""
        seed = self.cfg.seed + RANK_SEED_STRIDE * ctx.rank + run.index + run.global_offset + iteration
        seed_everything(seed)
        run.generator.manual_seed(seed)

    def _run_stage(
        self,
        ctx: DistributedContext,
        writer: ScalarWriter,
        network: nn.Module,
        index: int,
        resume: Optional[dict[str, Any]],
        synced_batchnorm: bool,
    ) -> StageReport:
        run = self._start_stage(ctx, network, index, resume, synced_batchnorm)
        stage = run.stage
        report = StageReport(stage.name, start_iteration=run.iteration, end_iteration=run.iteration, finished=False)
        logger.info(
            "stage %s: iterations %d..%d, batch %d (%d per process), amp %s",
            stage.name, run.iteration, stage.num_iterations, stage.batch_size, run.stream.local_batch, run.amp_dtype,
        )
        trainable = [p for group in run.optimizer.param_groups for p in group["params"]]
        max_norm = stage.optim.clip_grad_norm if stage.optim.clip_grad_norm > 0 else math.inf
        run.model.train()
        meter = IntervalMeter()
        progress = tqdm(
            total=stage.num_iterations, initial=run.iteration, desc=stage.name, disable=not ctx.is_main,
            dynamic_ncols=True,
        )
        warm_start: Optional[float] = None
        try:
            while run.iteration < stage.num_iterations and not any_process(self.stop.requested, ctx):
                batch = run.stream.next_batch(run.iteration)
                frames = batch["frames"].to(ctx.device, non_blocking=True)
                labels = batch["labels"].to(ctx.device, non_blocking=True)
                selector = batch["selector"].to(ctx.device, non_blocking=True)
                self._check_frame_size(frames)
                with autocast(ctx.device, run.amp_dtype):
                    prediction: ClipPrediction = run.model(frames, labels[:, 0], selector, run.generator)
                losses = clip_losses(
                    prediction.logits,
                    prediction.sensory_logits,
                    prediction.query_logits,
                    labels[:, 1:],
                    batch["num_objects"],
                    stage.loss,
                    iteration=run.iteration,
                )
                run.optimizer.zero_grad(set_to_none=True)
                run.scaler.scale(losses["total"]).backward()
                run.scaler.unscale_(run.optimizer)
                grad_norm = nn.utils.clip_grad_norm_(trainable, max_norm)
                learning_rates = {f"lr_{group['name']}": group["lr"] for group in run.optimizer.param_groups}
                run.scaler.step(run.optimizer)
                run.scaler.update()
                run.scheduler.step()
                run.iteration += 1
                progress.update(1)
                if warm_start is None:
                    warm_start = time.perf_counter()
                meter.add({**losses, "grad_norm": grad_norm})

                if run.iteration % self.cfg.log_interval == 0 or run.iteration == stage.num_iterations:
                    values = self._log_interval(ctx, writer, run, meter, learning_rates)
                    report.loss_log.append((run.iteration, values["total"]))
                    progress.set_postfix(loss=f"{values['total']:.4f}", clips_s=f"{values['clips_per_second']:.2f}")
                if self.cfg.image_interval and run.iteration % self.cfg.image_interval == 0 and ctx.is_main:
                    grid = clip_grid(frames, prediction.probs, labels, batch["num_objects"])
                    writer.image(f"{stage.name}/clips", grid, run.global_offset + run.iteration)
                if run.iteration % self.cfg.checkpoint_interval == 0 and run.iteration < stage.num_iterations:
                    self._save(ctx, network, run)
        finally:
            progress.close()
        report.end_iteration = run.iteration
        report.finished = run.iteration >= stage.num_iterations
        if warm_start is not None and report.end_iteration - report.start_iteration > 1:
            timed = report.end_iteration - report.start_iteration - 1
            report.clips_per_second = timed * stage.batch_size / (time.perf_counter() - warm_start)
        self._save(ctx, network, run)
        if not report.finished:
            logger.warning(
                "stage %s stopped at iteration %d; continue with train.resume=auto", stage.name, run.iteration
            )
        return report

    def _check_frame_size(self, frames: Tensor) -> None:
        multiple = self.model_cfg.pad_multiple
        if frames.shape[-2] % multiple or frames.shape[-1] % multiple:
            raise ConfigError(
                f"training frames of size {tuple(frames.shape[-2:])} are not multiples of "
                f"model.pad_multiple={multiple}; set data.crop_size to a multiple of it"
            )

    def _log_interval(
        self,
        ctx: DistributedContext,
        writer: ScalarWriter,
        run: StageRun,
        meter: IntervalMeter,
        learning_rates: dict[str, float],
    ) -> dict[str, float]:
        """Log (text and TensorBoard) the interval's mean losses and grad norm (over processes too),
        the throughput and the learning rates of the last iteration; returns the logged values."""
        stage = run.stage
        values = all_reduce_mean(meter.averages(), ctx)
        elapsed = meter.elapsed()
        values["clips_per_second"] = meter.count * stage.batch_size / max(elapsed, 1e-9)
        values.update(learning_rates)
        writer.scalars(stage.name, values, run.global_offset + run.iteration)
        remaining = (stage.num_iterations - run.iteration) * elapsed / meter.count
        eta = time.strftime("%H:%M:%S", time.gmtime(remaining)) if remaining < 86400 else f"{remaining / 86400:.1f} d"
        logger.info(
            "%s it %d/%d: %s, eta %s", stage.name, run.iteration, stage.num_iterations, format_scalars(values), eta
        )
        meter.reset()
        return values

    def _save(self, ctx: DistributedContext, network: nn.Module, run: StageRun) -> None:
        """Full checkpoint (every process's RNG states gathered to rank 0) and the stage's weights file."""
        rng_states = gather_objects(capture_rng_state(run.generator), ctx)
        if not ctx.is_main:
            return
        global_iteration = run.global_offset + run.iteration
        state = {
            "format": CHECKPOINT_FORMAT,
            "exp_id": self.cfg.exp_id,
            "stage_index": run.index,
            "stage_name": run.stage.name,
            "iteration": run.iteration,
            "global_iteration": global_iteration,
            "network": trainable_state_dict(network),
            "frozen_checksum": frozen_checksum(network),
            "optimizer": run.optimizer.state_dict(),
            "scheduler": run.scheduler.state_dict(),
            "scaler": run.scaler.state_dict(),
            "data_position": asdict(run.stream.position),
            "rng": rng_states,
        }
        path = checkpoint_path(self.run_dir, global_iteration)
        weights = weights_path(self.run_dir, run.stage.name)
        atomic_save(state, path)
        # The frozen ViT is left out only when it can be reloaded from model.backbone.weights;
        # a randomly initialised ViT (tiny models, tests) must travel with the weights.
        include_vit = self.model_cfg.backbone.weights is None
        atomic_save(network.state_dict() if include_vit else trainable_state_dict(network), weights)
        prune_checkpoints(self.run_dir, self.cfg.keep_checkpoints)
        logger.info("saved %s and %s", path, weights)
