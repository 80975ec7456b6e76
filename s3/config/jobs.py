"""Typed schemas of the smaller jobs: the quickstart, the model table, the benchmark, checkpoint
conversion, score merging, list making, BURST conversion, synthetic-data generation and
segmenting a video of one's own.

Each is the top level of its ``configs/<job>.yaml`` without the ``model`` / ``data`` nodes (those
have their own schemas). Values are checked when the dataclass is built; messages name the key.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any, Optional

from omegaconf import DictConfig, OmegaConf

from s3.config.eval import ZIP_LAYOUTS
from s3.config.inference import InferenceConfig
from s3.config.runtime import check_device, check_precision, check_threads
from s3.config.structured import to_dataclass
from s3.config.synthetic import SyntheticConfig
from s3.config.validation import ConfigError, check_choice, check_positive


def _check_frame_size(frame_size: list[int]) -> None:
    if len(frame_size) != 2 or min(frame_size) < 1:
        raise ConfigError(f"frame_size must be [H, W] with both >= 1, got {list(frame_size)}")


@dataclass
class QuickstartConfig:
    """``configs/quickstart.yaml``: synthetic videos -> train a tiny model -> evaluate -> J&F."""

    model: str = "s3_tiny"  # the model config trained (the job takes it from the composed `model` group)
    # model config name -> its quickstart recipe (configs/recipe/<recipe>.yaml)
    recipes: dict[str, str] = field(default_factory=lambda: {"s3_tiny": "quickstart", "stma_tiny": "stma_quickstart"})
    data_root: str = "data"
    output_dir: str = "outputs/quickstart"
    iterations: Optional[int] = None  # training iterations; None: the recipe's
    threads: int = 2
    visualize: bool = True
    resume: bool = True
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)  # the generated videos

    def __post_init__(self) -> None:
        if self.model not in self.recipes:
            raise ConfigError(f"model={self.model}: no quickstart recipe for it in recipes ({sorted(self.recipes)})")
        if self.iterations is not None:
            check_positive("iterations", self.iterations)
        check_threads("threads", self.threads)

    @property
    def recipe(self) -> str:
        """The quickstart recipe of ``model``."""
        return self.recipes[self.model]


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
    """``configs/benchmark.yaml``: the streaming engine's speed with a full memory, where its time goes,
    and whether long videos stay flat (``s3.run.benchmark``)."""

    size: int = 480  # frame height
    aspect: float = 1.8  # frame width = size * aspect, rounded to a multiple of 8 (480 -> 864)
    num_objects: int = 2
    # timed side by side, taking turns; None: fp32 and what the device runs natively (bf16 on a CPU
    # with avx512_bf16/AMX or a CUDA GPU, fp16 on CUDA)
    precisions: Optional[list[str]] = None
    repeats: int = 15  # timed steady-state frames per precision
    warmup: int = 1  # untimed frames after the memory is full (the first one counts the GFLOP)
    profile: bool = False  # per-module table of the timed frames
    frames: int = 0  # > 0: a long video of this many frames instead of the steady state
    window: int = 100  # long video: frames per reported window
    mem_every: int = 5
    max_mem_frames: int = 5
    top_k: int = 30
    long_term: bool = False  # the XMem-style long-term memory
    compile: bool = False  # torch.compile the network (inference.compile)
    gemm_probe: bool = True  # time a 2048^3 matrix product per dtype first: what the machine can do
    device: str = "cpu"
    threads: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("size", "num_objects", "repeats", "window", "mem_every", "top_k"):
            check_positive(name, getattr(self, name))
        if self.aspect <= 0:
            raise ConfigError(f"aspect must be > 0, got {self.aspect}")
        if self.precisions is not None and not self.precisions:
            raise ConfigError("precisions must name at least one of fp32, bf16, fp16 (or be null: automatic)")
        for index, precision in enumerate(self.precisions or []):
            check_precision(f"precisions[{index}]", precision)
            if precision == "fp16" and self.device != "cuda":
                raise ConfigError(f"precisions[{index}]=fp16 needs device=cuda")
        for name in ("warmup", "frames"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.max_mem_frames < 2:
            raise ConfigError(f"max_mem_frames must be >= 2, got {self.max_mem_frames}")
        if self.profile and (self.compile or self.frames):
            raise ConfigError("profile: the per-module table times modules one by one, in the steady state "
                              "without compile; leave out compile=true and frames")
        check_device("device", self.device)
        check_threads("threads", self.threads)


@dataclass
class GpuCheckConfig:
    """``configs/gpu_check.yaml``: one run that says what a GPU does with S3 (``s3.run.gpu_check``):
    inference speed per model, precision and compile setting, training steps and a DDP step."""

    device: str = "cuda"
    models: list[str] = field(default_factory=lambda: ["s3_vitb", "cutie_base"])  # timed for inference
    size: int = 480  # inference frame height (width: size * aspect, as the benchmark)
    aspect: float = 1.8
    num_objects: int = 2
    precisions: list[str] = field(default_factory=lambda: ["fp32", "bf16", "fp16"])
    compile: bool = True  # also time every model and precision compiled
    compile_backend: str = "inductor"  # torch.compile backend ("eager": capture only, for tests)
    repeats: int = 20  # timed inference frames per setting
    train_model: str = "s3_vitb"
    train_crop: int = 480  # square training crops
    train_batch: int = 4  # clips per step
    train_frames: int = 8  # frames per clip
    train_precisions: list[str] = field(default_factory=lambda: ["fp16", "bf16"])  # fp16: with a GradScaler
    train_steps: int = 3  # timed steps per precision, after one untimed step
    ddp: bool = True  # one DDP step in a one-process group (NCCL on CUDA, gloo on the CPU)
    budget_s: float = 540.0  # compiled timings still to come are skipped past this many seconds
    threads: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        check_device("device", self.device)
        if self.device == "auto":
            raise ConfigError("device must be cuda or cpu (the check measures one device)")
        for name in ("size", "num_objects", "repeats", "train_crop", "train_batch", "train_steps"):
            check_positive(name, getattr(self, name))
        if self.train_frames < 2:
            raise ConfigError(f"train_frames must be >= 2 (a training clip needs two frames), got {self.train_frames}")
        if self.aspect <= 0 or self.budget_s <= 0:
            raise ConfigError("aspect and budget_s must be > 0")
        for key in ("precisions", "train_precisions"):
            for index, precision in enumerate(getattr(self, key)):
                check_precision(f"{key}[{index}]", precision)
                if precision == "fp16" and self.device != "cuda":
                    raise ConfigError(f"{key}[{index}]=fp16 needs device=cuda")
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


@dataclass
class SegmentConfig:
    """``configs/segment.yaml``: one video of the user's own (a video file or a frame folder)
    segmented from its masks by a model config's streaming engine."""

    video: str = ""  # a video file (mp4, avi, ...) or a folder of frame images
    masks: str = ""  # one PNG (the start frame's mask) or a folder of <frame name>.png
    out: str = ""  # output folder: masks/<frame name>.png, overlay.mp4, overlay/<frame name>.jpg
    weights: Optional[str] = None  # a whole checkpoint; None keeps the model config's own weight keys
    start: Optional[int] = None  # annotated frame to start from; None: the first annotated (last with reverse)
    reverse: bool = False  # propagate towards frame 0
    size: int = 480  # shorter side processed (-1: native; only downscales); outputs keep the video's size
    inference: InferenceConfig = field(default_factory=InferenceConfig)  # its size comes from `size`
    save_overlays: bool = False  # overlay JPEGs beside the overlay mp4
    fps: Optional[float] = None  # overlay mp4 frame rate; None: the video file's own (10 for frame folders)
    device: str = "auto"  # auto | cpu | cuda
    threads: int = 0  # torch intra-op threads; 0 = torch's default
    seed: int = 0  # initialises the network when no weights are given
    progress: bool = True

    def __post_init__(self) -> None:
        for name in ("video", "masks", "out"):
            if not getattr(self, name):
                raise ConfigError(f"{name} is required: video=<mp4 or frame folder> masks=<png or folder> out=<folder>")
        if self.start is not None and self.start < 0:
            raise ConfigError(f"start must be a frame index >= 0, got {self.start}")
        if self.size == 0 or self.size < -1:
            raise ConfigError(f"size must be -1 (native) or > 0, got {self.size}")
        if self.inference.max_internal_size != -1:
            raise ConfigError("inference.max_internal_size: set the processing size with the top-level key size=...")
        if self.fps is not None:
            check_positive("fps", self.fps)
        check_device("device", self.device)
        check_threads("threads", self.threads)

    def inference_config(self) -> InferenceConfig:
        """The engine settings: the ``inference`` node with the processing ``size``."""
        return replace(self.inference, max_internal_size=self.size)
