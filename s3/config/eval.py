"""Typed schemas of evaluation runs (``configs/eval.yaml`` and the presets in ``configs/dataset/*.yaml``).

Three layers decide a run's protocol (input size, memory schedule, which frames and masks are read
and fed, which frames are written), in increasing priority:

1. the dataset preset (``dataset.*``: the paper's protocol, 480p and a memory frame every 5th);
2. the preset's ``plus`` block, when ``plus=true`` (the paper's "+" rows: 600/720 px);
3. a global override (top-level ``size``, ``mem_every``, ...), only when it is set (not null).

:meth:`EvalConfig.protocol` applies them; :meth:`EvalConfig.inference_config` puts the resolved
memory schedule and size into the engine's :class:`~s3.config.inference.InferenceConfig` (the
``inference`` node, which holds the dataset-independent settings and must not set those four);
``release=true`` turns on the engine settings of the authors' released evaluation config
(``RELEASE_INFERENCE``: flip averaging; their long-term memory sizes are ``configs/eval.yaml``'s).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Optional

from omegaconf import DictConfig, OmegaConf

from s3.config.inference import SCHEDULE_KEYS, InferenceConfig
from s3.config.runtime import check_device, check_threads
from s3.config.score import SCORING_MODES
from s3.config.structured import to_dataclass
from s3.config.validation import ConfigError, check_choice, check_positive

DATASET_LAYOUTS = ("davis", "ytvos", "burst", "generic")
# What the mask folder holds: every frame (ground truth), only the first frame, or each object's
# first appearance (sparse sets). ``unknown``: checked per video at read time.
ANNOTATIONS = ("dense", "first_frame", "first_appearance", "unknown")
ZIP_LAYOUTS = ("sequences_at_root", "annotations_at_root")  # where the sequence folders sit in a zip
SUBMISSIONS = ("none", *ZIP_LAYOUTS, "burst_json")
SCORE_MODES = ("none", *SCORING_MODES)
# The engine settings of the authors' released evaluation config that the paper's protocol leaves
# open (their global overrides of size, mem_every, use_all_masks, ... are left out: they replace
# every preset's protocol and feed DAVIS 2017 val its ground truth).
RELEASE_INFERENCE: dict[str, Any] = {"flip_aug": True}


@dataclass
class ProtocolOverrides:
    """Optional replacements of a preset's protocol (the ``plus`` block; the top-level globals)."""

    size: Optional[int] = None  # shorter side fed to the network (-1: native); only downscales
    mem_every: Optional[int] = None
    max_mem_frames: Optional[int] = None
    use_long_term: Optional[bool] = None
    use_all_masks: Optional[bool] = None  # feed every mask file (late-appearing objects), not just the first
    save_all: Optional[bool] = None  # write every processed frame, not just the frames the benchmark lists
    image_dir: Optional[str] = None  # read frames from here instead (e.g. DAVIS Full-Resolution)
    mask_dir: Optional[str] = None  # read the fed masks from here instead (e.g. DAVIS Full-Resolution)


PROTOCOL_KEYS = (
    "size", "mem_every", "max_mem_frames", "use_long_term", "use_all_masks", "save_all", "image_dir", "mask_dir"
)


@dataclass
class DatasetConfig:
    """One evaluation preset. Relative directories are under ``root``."""

    name: str = "generic"
    layout: str = "generic"  # one of DATASET_LAYOUTS: how videos, frames and masks are found
    root: str = "data"
    image_dir: str = "JPEGImages"
    mask_dir: str = "Annotations"  # input masks (davis / ytvos / generic layouts)
    output_size_dir: Optional[str] = None  # frames whose size the outputs take (default: image_dir)
    subset: Optional[str] = None  # text file with one video name a line (default: folders of mask_dir)
    meta: Optional[str] = None  # ytvos: meta.json listing the frames to save per object
    burst_json: Optional[str] = None  # burst: first_frame_annotations.json
    annotation: str = "unknown"  # one of ANNOTATIONS: what mask_dir holds
    submission: str = "none"  # one of SUBMISSIONS
    score_mode: str = "none"  # one of SCORE_MODES; local scoring when ground truth is there
    gt_dir: Optional[str] = None  # ground truth for scoring (default: mask_dir)
    # the mask value of void (ignored) pixels, never an object: fed as background, ignored by the davis
    # scorer, background in training; null where 255 is an object id (DAVIS 2016's 0/255 masks, the
    # vos_benchmark convention, BURST track ids)
    void_label: Optional[int] = 255
    size: int = 480
    mem_every: int = 5
    max_mem_frames: int = 5
    use_long_term: bool = False
    use_all_masks: bool = False
    save_all: bool = True
    plus: ProtocolOverrides = field(default_factory=ProtocolOverrides)

    def validate(self, key: str = "dataset") -> None:
        check_choice(f"{key}.layout", self.layout, DATASET_LAYOUTS)
        check_choice(f"{key}.annotation", self.annotation, ANNOTATIONS)
        check_choice(f"{key}.submission", self.submission, SUBMISSIONS)
        check_choice(f"{key}.score_mode", self.score_mode, SCORE_MODES)
        if self.void_label is not None and not 1 <= self.void_label <= 255:
            raise ConfigError(f"{key}.void_label must be null or a mask value in 1..255, got {self.void_label}")
        if self.void_label is not None and self.score_mode == "vos_benchmark":
            raise ConfigError(
                f"{key}.void_label={self.void_label}: score_mode=vos_benchmark scores every id as an object; "
                f"set {key}.void_label=null (or score_mode=davis)"
            )
        if self.layout == "burst" and not self.burst_json:
            raise ConfigError(f"{key}.burst_json must name the annotation JSON for layout=burst")
        if self.layout == "ytvos" and not self.save_all and not self.meta:
            raise ConfigError(f"{key}.meta must name meta.json when save_all=false for layout=ytvos")


@dataclass
class Protocol:
    """The resolved per-run protocol (after plus and global overrides)."""

    size: int
    mem_every: int
    max_mem_frames: int
    use_long_term: bool
    use_all_masks: bool
    save_all: bool
    image_dir: str
    mask_dir: str

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class EvalConfig:
    """The whole evaluation run (``configs/eval.yaml``; ``model`` is converted separately)."""

    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    inference: InferenceConfig = field(default_factory=InferenceConfig)
    weights: Optional[str] = None  # a whole S3 checkpoint (our layout or the reference layout)
    exp_id: str = "s3"
    output_dir: str = "outputs"
    plus: bool = False  # the preset's "+" setting (higher resolution)
    release: bool = False  # the engine settings of the authors' released config (RELEASE_INFERENCE)
    # global overrides: null = the preset decides
    size: Optional[int] = None
    mem_every: Optional[int] = None
    max_mem_frames: Optional[int] = None
    use_long_term: Optional[bool] = None
    use_all_masks: Optional[bool] = None
    save_all: Optional[bool] = None
    image_dir: Optional[str] = None
    mask_dir: Optional[str] = None
    save_scores: bool = False  # per-frame probabilities for scripts/merge_scores.py
    visualize: bool = False  # overlay JPEGs and an mp4 per video
    score: bool = True  # score locally when the preset has ground truth on disk
    report: bool = True  # scored runs: write report.html (tables, per-frame curves, worst frames)
    score_workers: int = 1
    make_zip: bool = True  # build the submission archive when the preset has one
    resume: bool = True  # skip videos an earlier run with the same settings finished
    device: str = "auto"  # auto | cpu | cuda
    threads: int = 0  # torch intra-op threads on CPU; 0 = torch's default
    seed: int = 0  # initialises the network when weights=null (every torchrun process alike)
    progress: bool = True

    def __post_init__(self) -> None:
        self.dataset.validate()
        check_device("device", self.device)
        check_threads("threads", self.threads)
        check_positive("score_workers", self.score_workers)
        self.protocol()  # validates the resolved combination

    def protocol(self) -> Protocol:
        """Preset values, then the ``plus`` block (when ``plus``), then the set global overrides."""
        values = {k: getattr(self.dataset, k) for k in PROTOCOL_KEYS}
        layers = [self.dataset.plus] if self.plus else []
        layers.append(ProtocolOverrides(**{k: getattr(self, k) for k in PROTOCOL_KEYS}))
        for layer in layers:
            values.update({k: getattr(layer, k) for k in PROTOCOL_KEYS if getattr(layer, k) is not None})
        protocol = Protocol(**values)
        self._check_protocol(protocol)
        return protocol

    def _check_protocol(self, p: Protocol) -> None:
        if p.size == 0 or p.size < -1:
            raise ConfigError(f"size must be -1 (native) or > 0, got {p.size}")
        check_positive("mem_every", p.mem_every)
        if p.max_mem_frames < 2:
            raise ConfigError(f"max_mem_frames must be >= 2, got {p.max_mem_frames}")
        if p.use_all_masks and self.dataset.annotation == "dense":
            raise ConfigError(
                f"use_all_masks=true on dataset {self.dataset.name}: its mask folder "
                f"({self.dataset.mask_dir}) is fully annotated ground truth, so every frame would be fed "
                "its answer; the protocol uses the first-frame masks only"
            )

    def inference_config(self) -> InferenceConfig:
        """The engine settings of this run: the ``inference`` node (with ``RELEASE_INFERENCE`` when
        ``release``) and the protocol's memory schedule and size."""
        p = self.protocol()
        return dataclasses.replace(
            self.inference,
            **(RELEASE_INFERENCE if self.release else {}),
            mem_every=p.mem_every,
            max_mem_frames=p.max_mem_frames,
            use_long_term=p.use_long_term,
            max_internal_size=p.size,
        )


def to_eval_config(cfg: DictConfig) -> EvalConfig:
    """The validated :class:`EvalConfig` of a composed ``eval`` config (its ``model`` node is left out)."""
    node = OmegaConf.masked_copy(cfg, [k for k in cfg.keys() if k != "model"])
    missing = sorted(OmegaConf.missing_keys(node))  # a merge would silently keep the schema default
    if missing:
        raise ConfigError(f"{missing[0]}: a value is required (the preset leaves it ???)")
    inference = node.get("inference") or {}
    for name in SCHEDULE_KEYS:  # the protocol decides these; a value here would be overwritten silently
        if name in inference:
            top_level = "size" if name == "max_internal_size" else name
            raise ConfigError(
                f"inference.{name}: set by the dataset preset's protocol; override it with the top-level "
                f"key {top_level}=... instead"
            )
    return to_dataclass(node, EvalConfig, "")  # top-level keys are named as the user types them
