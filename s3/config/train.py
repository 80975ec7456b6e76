"""Typed schema of the training configuration (the ``train`` node of ``configs/train.yaml``).

Training runs a list of stages in order (``train.stages``); each stage has its own iteration
count, batch size, optimiser and schedule, max-skip curriculum, loss sampling, recurrent-forward
settings and data (which training set, plus overrides of the top-level ``data`` node). The defaults of
:class:`StageConfig` are the paper's main training (Table A1, with the reference code's values
where the paper is silent); the recipes in ``configs/recipe/`` set the rest. Values are
validated when the dataclass is built, so a bad override fails at start-up with the offending key
in the message.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from omegaconf import DictConfig, OmegaConf

from s3.config.runtime import check_device, check_precision, check_threads
from s3.config.structured import reject_unknown_keys, to_dataclass
from s3.config.validation import ConfigError, check_choice, check_positive

LR_SCHEDULES = ("step", "constant", "cosine")
LOSS_KINDS = ("point", "bootstrap")


@dataclass
class LossConfig:
    """Cross-entropy + dice on the final masks (weighted ``ce_weight`` / ``dice_weight``) and the aux weights.

    ``point`` (S3, Cutie): both terms at PointRend-style uncertain points. ``bootstrap`` (STMA, XMem):
    both terms over every pixel, the cross-entropy bootstrapped: only the hardest share p of each
    frame's pixels counts, p = 1 before ``bootstrap_start_warm`` iterations of the stage, falling
    linearly to ``bootstrap_top_p`` at ``bootstrap_end_warm`` and staying there.
    """

    kind: str = "point"  # point | bootstrap
    ce_weight: float = 1.0  # weight of the final masks' cross-entropy (STMA: 0.5, paper 3.4)
    dice_weight: float = 1.0  # weight of the final masks' dice (STMA: 0.5, paper 3.4)
    num_points: int = 12544  # point: points per frame (112^2); the reference pre-training uses 8192
    oversample_ratio: float = 3.0  # point: candidates drawn per kept point
    importance_sample_ratio: float = 0.75  # point: share of the kept points taken from the most uncertain candidates
    bootstrap_top_p: float = 0.15  # bootstrap: share of the hardest pixels kept once warm (XMem)
    bootstrap_start_warm: int = 20000  # bootstrap: stage iteration where p starts to fall from 1 (XMem)
    bootstrap_end_warm: int = 70000  # bootstrap: stage iteration where p reaches bootstrap_top_p (XMem)
    sensory_weight: float = 0.01  # weight of the sensory aux CE and dice terms (models that predict them)
    query_weight: float = 0.01  # weight of each query-transformer aux level's CE and dice terms (idem)

    def validate(self, key: str) -> None:
        check_choice(f"{key}.kind", self.kind, LOSS_KINDS)
        check_positive(f"{key}.num_points", self.num_points)
        if self.oversample_ratio < 1.0:
            raise ConfigError(f"{key}.oversample_ratio must be >= 1, got {self.oversample_ratio}")
        if not 0.0 <= self.importance_sample_ratio <= 1.0:
            raise ConfigError(f"{key}.importance_sample_ratio must be in [0, 1], got {self.importance_sample_ratio}")
        if not 0.0 < self.bootstrap_top_p <= 1.0:
            raise ConfigError(f"{key}.bootstrap_top_p must be in (0, 1], got {self.bootstrap_top_p}")
        if not 0 <= self.bootstrap_start_warm <= self.bootstrap_end_warm:
            raise ConfigError(
                f"{key}: need 0 <= bootstrap_start_warm <= bootstrap_end_warm, got "
                f"{self.bootstrap_start_warm} and {self.bootstrap_end_warm}"
            )
        for name in ("ce_weight", "dice_weight", "sensory_weight", "query_weight"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{key}.{name} must be >= 0, got {getattr(self, name)}")

    def bootstrap_fraction(self, iteration: int) -> float:
        """The share p of the hardest pixels the bootstrapped cross-entropy keeps at ``iteration``
        (0-based, counted within the stage)."""
        if iteration < self.bootstrap_start_warm:
            return 1.0
        if iteration >= self.bootstrap_end_warm:
            return self.bootstrap_top_p
        progress = (iteration - self.bootstrap_start_warm) / (self.bootstrap_end_warm - self.bootstrap_start_warm)
        return 1.0 - progress * (1.0 - self.bootstrap_top_p)


@dataclass
class OptimizerConfig:
    """AdamW with three parameter groups, a step (or constant) schedule and gradient clipping.

    Groups: every trainable ``pixel_encoder.*`` parameter at ``lr * backbone_lr_ratio`` (the
    reference trains the whole spatial-semantic adapter this way); the learned query embedding
    tables (``nn.Embedding`` weights) without weight decay; everything else at ``lr``.
    """

    lr: float = 5e-5
    weight_decay: float = 0.05  # paper Table A1; the reference code uses 0.001
    embedding_weight_decay: float = 0.0
    backbone_lr_ratio: float = 0.1
    # The reference matches embedding names by suffix, which also catches the two Linear weights
    # object_transformer.summary_to_query_{init,emb}.weight, so they get no weight decay (an
    # accident of its name matching). False keeps that behaviour (reproduces the reference); True decays them like
    # every other Linear weight.
    decay_summary_to_query: bool = False
    adam_eps: Optional[float] = None  # None: 1e-6 when AMP is active, else 1e-8 (reference)
    # step (MultiStepLR at lr_step_fractions) | constant | cosine (half a cosine from lr to 0 over the stage)
    lr_schedule: str = "step"
    # step points as fractions of the stage's iterations (rounded): the reference's 100k, 115k of 125k;
    # the paper gives none
    lr_step_fractions: list[float] = field(default_factory=lambda: [0.8, 0.92])
    lr_gamma: float = 0.1
    # linear warm-up: iteration i (from 0) runs at lr * min(1, (i + 1) / warmup_iterations), on top of
    # the steps; 0 (paper, reference): none
    warmup_iterations: int = 0
    clip_grad_norm: float = 3.0  # global L2 norm after unscaling; <= 0 disables clipping

    def validate(self, key: str) -> None:
        check_positive(f"{key}.lr", self.lr)
        check_positive(f"{key}.backbone_lr_ratio", self.backbone_lr_ratio)
        check_positive(f"{key}.lr_gamma", self.lr_gamma)
        check_choice(f"{key}.lr_schedule", self.lr_schedule, LR_SCHEDULES)
        if self.weight_decay < 0 or self.embedding_weight_decay < 0:
            raise ConfigError(f"{key}: weight_decay and embedding_weight_decay must be >= 0")
        if self.adam_eps is not None:
            check_positive(f"{key}.adam_eps", self.adam_eps)
        if self.warmup_iterations < 0:
            raise ConfigError(f"{key}.warmup_iterations must be >= 0, got {self.warmup_iterations}")
        fractions = list(self.lr_step_fractions)
        if self.lr_schedule != "step" and fractions:
            raise ConfigError(
                f"{key}.lr_step_fractions={fractions} must be empty for lr_schedule={self.lr_schedule}"
            )
        if fractions != sorted(set(fractions)) or any(not 0 < f < 1 for f in fractions):
            raise ConfigError(f"{key}.lr_step_fractions={fractions} must be strictly increasing and inside (0, 1)")

    def milestones(self, num_iterations: int) -> list[int]:
        """The iterations (of a stage of ``num_iterations``) after which the lr is multiplied by lr_gamma."""
        return [round(num_iterations * f) for f in self.lr_step_fractions]


@dataclass
class StageConfig:
    """One training stage (static-image pre-training, main video training, ...)."""

    name: str = "main"  # used in checkpoint names, TensorBoard tags and log lines
    num_iterations: int = 150000  # paper Table A1, DAVIS+YTVOS (MEGA: 190000)
    batch_size: int = 16  # global: divided by the number of processes
    precision: Optional[str] = None  # fp32 | bf16 | fp16 for this stage; None: train.precision
    num_ref_frames: int = 3  # memory frames per step (STMA: reference frames); more earlier frames are sub-sampled
    deep_update_prob: float = 0.2  # chance per time step of a deep sensory update when memorising (S3 only)
    # curriculum: max_skip_schedule[i] applies from max_skip_fractions[i] of the iterations on (Table A1
    # lists the end points 0.1/0.3/0.8/1, the reference code the start points: the same schedule)
    max_skip_schedule: list[int] = field(default_factory=lambda: [5, 10, 15, 5])
    max_skip_fractions: list[float] = field(default_factory=lambda: [0.0, 0.1, 0.3, 0.8])
    optim: OptimizerConfig = field(default_factory=OptimizerConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    # overrides merged onto the top-level `data` node for this stage; {static: {enabled: true}} makes
    # it a static-image pre-training stage
    data: dict[str, Any] = field(default_factory=dict)

    def validate(self, key: str) -> None:
        if not self.name or "/" in self.name:
            raise ConfigError(f"{key}.name={self.name!r} must be a non-empty file-name-safe string")
        for name in ("num_iterations", "batch_size", "num_ref_frames"):
            check_positive(f"{key}.{name}", getattr(self, name))
        if not 0.0 <= self.deep_update_prob <= 1.0:
            raise ConfigError(f"{key}.deep_update_prob must be in [0, 1], got {self.deep_update_prob}")
        skips, fractions = list(self.max_skip_schedule), list(self.max_skip_fractions)
        if not skips or len(skips) != len(fractions) or min(skips) < 1:
            raise ConfigError(
                f"{key}: max_skip_schedule={skips} and max_skip_fractions={fractions} must be non-empty, "
                "of equal length, with skips >= 1"
            )
        if fractions[0] != 0.0 or fractions != sorted(fractions) or fractions[-1] >= 1.0:
            raise ConfigError(f"{key}.max_skip_fractions={fractions} must start at 0, not decrease and stay below 1")
        if self.precision is not None:
            check_precision(f"{key}.precision", self.precision)
        self.optim.validate(f"{key}.optim")
        self.loss.validate(f"{key}.loss")


@dataclass
class TrainConfig:
    """The whole training run: stages, run directory, resume, devices, logging and checkpoints."""

    exp_id: str = "s3"
    run_dir: str = "runs/s3"  # everything of the run lands here (configs/train.yaml: runs/${train.exp_id})
    resume: str = "none"  # none | auto (latest checkpoint in run_dir) | path of a checkpoint file
    stages: list[StageConfig] = field(default_factory=lambda: [StageConfig()])
    seed: int = 14159265
    device: str = "auto"  # auto (cuda when available) | cpu | cuda
    # fp16 (autocast + GradScaler; CUDA only: a CPU run trains in fp32) | bf16 (autocast, CPU and CUDA) | fp32
    precision: str = "fp16"
    grad_scaler_init_scale: float = 8192.0
    num_workers: int = 4  # data-loading worker processes per training process
    threads: int = 0  # torch intra-op threads per process; 0 = torch's default
    deterministic: bool = False  # deterministic algorithms (bit-exact resume on CPU)
    cudnn_benchmark: bool = True
    sync_batchnorm: bool = True  # SyncBatchNorm for the encoder's training BatchNorms (CUDA + DDP only)
    compile: bool = False  # torch.compile the network's parts (s3.model.compile); checkpoints are unchanged
    checkpoint_interval: int = 10000  # full checkpoint + weights file every N iterations (and at stage end)
    keep_checkpoints: int = 2  # newest full checkpoints kept in run_dir/checkpoints
    log_interval: int = 100  # iterations between text/TensorBoard scalar logs
    image_interval: int = 1500  # iterations between TensorBoard image grids; 0 disables them

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        key = "train"
        check_device(f"{key}.device", self.device)
        check_precision(f"{key}.precision", self.precision)
        if not self.exp_id or "/" in self.exp_id:
            raise ConfigError(f"{key}.exp_id={self.exp_id!r} must be a non-empty file-name-safe string")
        if not self.run_dir:
            raise ConfigError(f"{key}.run_dir must not be empty")
        if not self.resume:
            raise ConfigError(f"{key}.resume must be none, auto or a checkpoint path")
        if not self.stages:
            raise ConfigError(f"{key}.stages must list at least one stage")
        names = [s.name for s in self.stages]
        if len(set(names)) != len(names):
            raise ConfigError(f"{key}.stages: stage names must be unique, got {names}")
        for i, stage in enumerate(self.stages):
            stage.validate(f"{key}.stages.{i}")
        for name in ("checkpoint_interval", "keep_checkpoints", "log_interval", "grad_scaler_init_scale"):
            check_positive(f"{key}.{name}", getattr(self, name))
        check_threads(f"{key}.threads", self.threads)
        if self.num_workers < 0 or self.image_interval < 0:
            raise ConfigError(f"{key}: num_workers and image_interval must be >= 0")


def to_train_config(node: DictConfig | dict[str, Any]) -> TrainConfig:
    """Merge a composed ``train`` node onto the schema and build the validated dataclass.

    Interpolations are resolved in the node's own config first (the run directory and the recipe's
    schedule refer to ``model``, ``data`` and ``recipe`` keys outside the ``train`` node).
    """
    if isinstance(node, DictConfig):
        node = OmegaConf.to_container(node, resolve=True)  # type: ignore[assignment]
    for i, stage in enumerate(node.get("stages") or []):  # list items: name the index in messages
        reject_unknown_keys(stage, StageConfig, f"train.stages.{i}")
    return to_dataclass(node, TrainConfig, "train")
