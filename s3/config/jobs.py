"""Typed schemas of the smaller jobs: the quickstart, the model table, the benchmark, checkpoint
conversion, score merging, list making, BURST conversion and synthetic-data generation.

Each is the top level of its ``configs/<job>.yaml`` without the ``model`` / ``data`` nodes (those
have their own schemas). Values are checked when the dataclass is built; messages name the key.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Optional

from omegaconf import DictConfig, OmegaConf

from s3.config.eval import ZIP_LAYOUTS
from s3.config.runtime import check_device, check_precision, check_threads
from s3.config.structured import to_dataclass
from s3.config.synthetic import SyntheticConfig
from s3.config.validation import ConfigError, check_choice, check_positive


def _check_frame_size(frame_size: list[int]) -> None:
    if len(frame_size) != 2 or min(frame_size) < 1:
        raise ConfigError(f"frame_size must be [H, W] with both >= 1, got {list(frame_size)}")


@dataclass
class QuickstartConfig:
    """``configs/quickstart.yaml``: synthetic videos -> train the tiny model -> evaluate -> J&F."""

    data_root: str = "data"
    output_dir: str = "outputs/quickstart"
    iterations: int = 700
    threads: int = 2
    visualize: bool = True
    resume: bool = True
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)  # the generated videos

    def __post_init__(self) -> None:
        check_positive("iterations", self.iterations)
        check_threads("threads", self.threads)


@dataclass
class ModelTableConfig:
    """``configs/model_summary.yaml``: per-module parameters and output shapes of a model config."""

    frame_size: list[int] = field(default_factory=lambda: [480, 864])  # H, W of the probe frames
    num_objects: int = 2
    seed: int = 0
    threads: int = 0  # torch intra-op threads; 0 = torch's default

    def __post_init__(self) -> None:
        _check_frame_size(self.frame_size)
        check_positive("num_objects", self.num_objects)
        check_threads("threads", self.threads)


@dataclass
class BenchmarkConfig:
    """``configs/benchmark.yaml``: seconds per frame of the streaming engine with a full memory."""

    frame_size: list[int] = field(default_factory=lambda: [480, 864])
    num_objects: int = 2
    repeats: int = 3  # timed frames
    warmup: int = 1  # untimed frames after the memory is full
    device: str = "cpu"
    precision: str = "fp32"  # fp32 | bf16 | fp16 (CUDA)
    threads: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        _check_frame_size(self.frame_size)
        for name in ("num_objects", "repeats"):
            check_positive(name, getattr(self, name))
        if self.warmup < 0:
            raise ConfigError(f"warmup must be >= 0, got {self.warmup}")
        check_device("device", self.device)
        check_precision("precision", self.precision)
        check_threads("threads", self.threads)


@dataclass
class ConvertConfig:
    """``configs/convert_checkpoint.yaml``: a whole checkpoint rewritten in our layout."""

    src: str = ""  # a whole checkpoint in the authors' (reference) layout, or ours
    out: str = ""  # where to write it in our layout
    drop_vit: bool = False  # leave out the frozen ViT (then evaluation needs model.backbone.weights)

    def __post_init__(self) -> None:
        if not self.src or not self.out:
            raise ConfigError("src and out are required: src=<checkpoint> out=<file to write>")


@dataclass
class MergeScoresConfig:
    """``configs/merge_scores.yaml``: average the saved probabilities of several evaluation runs."""

    runs: list[str] = field(default_factory=list)  # run folders evaluated with save_scores=true
    output_dir: str = ""
    layout: str = "none"  # none | sequences_at_root | annotations_at_root: the submission zip to build
    zip_name: str = "merged.zip"

    def __post_init__(self) -> None:
        if len(self.runs) < 1:
            raise ConfigError("runs must list at least one run folder: runs=[<run dir>,<run dir>]")
        if not self.output_dir:
            raise ConfigError("output_dir is required")
        check_choice("layout", self.layout, ("none", *ZIP_LAYOUTS))


@dataclass
class CompareConfig:
    """``configs/compare.yaml``: one page comparing two or more scored runs on one benchmark."""

    runs: list[str] = field(default_factory=list)  # run folders (or score.py result folders) holding the CSVs
    out: str = "comparison.html"
    names: list[str] = field(default_factory=list)  # labels of the runs; empty = folder names
    set_name: Optional[str] = None  # which CSV set (e.g. davis17); None = the only one there
    disagreeing: int = 10  # sequences shown with their curves overlaid, where the runs differ most

    def __post_init__(self) -> None:
        if len(self.runs) < 2:
            raise ConfigError("runs must list at least two run folders: runs=[<run dir>,<run dir>]")
        if self.names and len(self.names) != len(self.runs):
            raise ConfigError(f"names has {len(self.names)} labels for {len(self.runs)} runs")
        check_positive("disagreeing", self.disagreeing)


@dataclass
class MakeListsConfig:
    """``configs/make_lists.yaml``: video lists and empty-frame lists of a data mix."""

    names: list[str] = field(default_factory=list)  # dataset names of data.datasets; empty = all
    output_dir: str = "lists"


@dataclass
class ConvertBurstConfig:
    """``configs/convert_burst.yaml``: BURST training annotations -> VOS folders."""

    annotations: str = ""
    frames: str = ""
    output: str = ""

    def __post_init__(self) -> None:
        for name in ("annotations", "frames", "output"):
            if not getattr(self, name):
                raise ConfigError(f"{name} is required")


@dataclass
class MakeSyntheticConfig:
    """``configs/make_synthetic.yaml``: where to write the synthetic dataset, and its generator
    settings (the other top-level keys, :class:`SyntheticConfig`)."""

    root: str
    overwrite: bool
    synthetic: SyntheticConfig


def job_config(node: DictConfig | dict[str, Any], schema: type, leave_out: tuple[str, ...] = ()) -> Any:
    """The validated ``schema`` of a composed job config's top level, without the ``leave_out`` nodes
    (``model``, ``data``: converted by their own schemas)."""
    if isinstance(node, DictConfig):
        node = OmegaConf.masked_copy(node, [k for k in node.keys() if k not in leave_out])
        missing = [k for k in node.keys() if OmegaConf.is_missing(node, k)]  # in the file's order
        if missing:
            raise ConfigError(f"{missing[0]}: a value is required")
        node = OmegaConf.to_container(node, resolve=True)  # type: ignore[assignment]
    top = {k: v for k, v in node.items() if k not in leave_out}
    return to_dataclass(top, schema, "")


def to_make_synthetic_config(node: DictConfig | dict[str, Any]) -> MakeSyntheticConfig:
    """Split ``make_synthetic.yaml``'s flat top level into the output settings and the generator config."""
    if isinstance(node, DictConfig):
        node = OmegaConf.to_container(node, resolve=True)  # type: ignore[assignment]
    generator = {f.name for f in fields(SyntheticConfig)}
    unknown = sorted(k for k in node if k not in generator | {"root", "overwrite"})
    if unknown:
        raise ConfigError(f"{unknown[0]}: unknown key (valid keys: {sorted(generator | {'root', 'overwrite'})})")
    root: Optional[Any] = node.get("root")
    if not root:
        raise ConfigError("root is required: the folder to write the dataset into")
    overwrite = node.get("overwrite", False)
    if not isinstance(overwrite, bool):
        raise ConfigError(f"overwrite must be true or false, got {overwrite!r}")
    synthetic = to_dataclass({k: v for k, v in node.items() if k in generator}, SyntheticConfig, "")
    return MakeSyntheticConfig(root=str(root), overwrite=overwrite, synthetic=synthetic)
