"""Typed schema of the training-data configuration (the ``data`` Hydra group).

A ``data/<mix>.yaml`` file names the video datasets of the main stage, how clips are sampled and
augmented, and the static-image pre-training stage. Values are checked when the dataclass is built;
that dataset folders exist is checked when the datasets are built (``s3.data.build``), with messages
that name the key (``data.datasets.<name>.root``) and the path.

List files (``subset``, ``exclude``, ``empty_frames``): a bare file name such as ``davis_train.txt``
names a list shipped in ``s3/data/lists/``; anything with a directory part (``./my_list.txt``,
``/data/lists/x.txt``) is a path on disk.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional, TypeVar

from omegaconf import MISSING

from s3.config.structured import to_dataclass
from s3.config.validation import ConfigError, check_choice, check_positive, check_probability

T = TypeVar("T")

VIDEO_READERS = ("davis", "folder")
IMAGE_LAYOUTS = ("flat", "class_folders")


def _as_schema(value: Any, schema: type[T], key: str) -> T:
    """A named entry of a dataset dict as its dataclass (built and checked here, so keys are named)."""
    return value if isinstance(value, schema) else to_dataclass(value, schema, key)


def _check_range(key: str, values: list[float], low: float, high: Optional[float] = None) -> None:
    """A two-number [min, max] range with low <= min <= max (<= high)."""
    if len(values) != 2 or not low <= values[0] <= values[1] or (high is not None and values[1] > high):
        bound = f"<= {high}" if high is not None else ""
        raise ConfigError(f"{key}={list(values)} must be [min, max] with {low} <= min <= max {bound}".rstrip())


@dataclass
class VideoDatasetConfig:
    """One VOS-layout training set; its key in ``data.datasets`` is its name."""

    reader: str = "folder"  # davis: <root>/{JPEGImages,Annotations}/480p | folder: <root>/{JPEGImages,Annotations}
    root: str = MISSING  # dataset folder (configs build it from data.root)
    subset: Optional[str] = None  # videos to use, one per line; davis: None = <root>/ImageSets/2017/train.txt
    exclude: Optional[str] = None  # videos to leave out, one per line
    empty_frames: Optional[str] = None  # lines "<video>/<frame>" whose mask is empty (never a clip's first frame)
    frame_interval: int = 1  # divides the curriculum max skip (Cutie: DAVIS 2, YouTube-VOS/MOSE/BURST 5, OVIS 3)
    multiplier: int = 1  # each frame is a clip seed this many times per epoch

    def validate(self, key: str) -> None:
        check_choice(f"{key}.reader", self.reader, VIDEO_READERS)
        check_positive(f"{key}.frame_interval", self.frame_interval)
        check_positive(f"{key}.multiplier", self.multiplier)


@dataclass
class AugmentationConfig:
    """Clip augmentation; one random draw per clip (Cutie parity). Switches turn whole groups off."""

    flip: bool = True  # horizontal flip with probability 0.5
    affine: bool = True  # rotation and shear (image bilinear with the fill colour, mask nearest with 0)
    random_crop: bool = True  # random resized crop to crop_size; off = resize the whole frame to crop_size
    color: bool = True  # colour jitter + random grayscale
    rotation_degrees: float = 25.0
    shear_degrees: float = 20.0  # horizontal shear in [-shear, shear]
    crop_scale: list[float] = field(default_factory=lambda: [0.36, 1.0])  # crop area / frame area
    crop_ratio: list[float] = field(default_factory=lambda: [0.75, 4.0 / 3.0])  # crop width / height
    fill: list[int] = field(default_factory=lambda: [124, 116, 104])  # RGB of pixels warped in from outside
    jitter: list[float] = field(default_factory=lambda: [0.1, 0.03, 0.03, 0.0])  # brightness, contrast, saturation, hue
    grayscale_probability: float = 0.05
    second_jitter: list[float] = field(default_factory=lambda: [0.1, 0.05, 0.05, 0.0])  # applied after grayscale
    second_jitter_per_frame: bool = False  # Cutie draws it once per clip although it calls it per-frame

    def validate(self, key: str = "data.augmentation") -> None:
        _check_range(f"{key}.crop_scale", self.crop_scale, 0.0, 1.0)
        if not self.crop_scale[0] > 0:
            raise ConfigError(f"{key}.crop_scale={list(self.crop_scale)} must start above 0")
        _check_range(f"{key}.crop_ratio", self.crop_ratio, 1e-6)
        if not (self.rotation_degrees >= 0 and 0 <= self.shear_degrees < 90):
            raise ConfigError(f"{key}: rotation_degrees must be >= 0 and shear_degrees in [0, 90)")
        if len(self.fill) != 3 or not all(0 <= v <= 255 for v in self.fill):
            raise ConfigError(f"{key}.fill={list(self.fill)} must be three values in 0..255")
        for name in ("jitter", "second_jitter"):
            values = getattr(self, name)
            if len(values) != 4 or min(values) < 0 or values[3] > 0.5 or max(values[:3]) >= 1:
                raise ConfigError(
                    f"{key}.{name}={list(values)} must be [brightness, contrast, saturation, hue] "
                    "with 0 <= b, c, s < 1 and 0 <= hue <= 0.5"
                )
        check_probability(f"{key}.grayscale_probability", self.grayscale_probability)


@dataclass
class ImageDatasetConfig:
    """One static image set for pre-training (``<name>.jpg`` + ``<name>.png`` pairs)."""

    root: str = MISSING
    layout: str = "flat"  # flat: <root>/<name>.{jpg,png} | class_folders: <root>/<class>/<name>.{jpg,png} (FSS)
    multiplier: int = 1  # each image is listed this many times per epoch

    def validate(self, key: str) -> None:
        check_choice(f"{key}.layout", self.layout, IMAGE_LAYOUTS)
        check_positive(f"{key}.multiplier", self.multiplier)


@dataclass
class StaticConfig:
    """Static-image pre-training: short clips made by warping one image.

    ``enabled`` makes the data config a static-image one: ``build_train_dataset`` then builds these
    clips, with the sizes below, instead of the video mix. A training stage turns it on through its
    ``data`` overrides (the cutie recipe's pre-training stage).
    """

    enabled: bool = False  # the paper trains S3 on video only
    # name -> ImageDatasetConfig fields (typed Any so that each entry is checked with its name in messages)
    datasets: dict[str, Any] = field(default_factory=dict)
    seq_length: int = 3  # frames per clip
    crop_size: int = 384  # square crop
    max_objects: int = 1  # selector length of the static stage's samples

    def __post_init__(self) -> None:
        self.datasets = {
            name: _as_schema(value, ImageDatasetConfig, f"data.static.datasets.{name}")
            for name, value in self.datasets.items()
        }

    def validate(self, key: str = "data.static") -> None:
        for name in ("seq_length", "crop_size", "max_objects"):
            check_positive(f"{key}.{name}", getattr(self, name))
        for name, dataset in self.datasets.items():
            dataset.validate(f"{key}.datasets.{name}")
        if self.enabled and not self.datasets:
            raise ConfigError(f"{key}.enabled is true but {key}.datasets is empty")


@dataclass
class DataConfig:
    """Training data: the video mix, clip sampling, augmentation and the optional static stage."""

    name: str = "custom"  # label of the mix (davis_ytvos, mega, ...)
    root: str = "data"  # folder that dataset roots are built from in the YAML files (env S3_DATA_ROOT)
    # name -> VideoDatasetConfig fields (typed Any so that each entry is checked with its name in messages)
    datasets: dict[str, Any] = field(default_factory=dict)
    # names of `datasets` to train on (a stage's data override, e.g. recipe=stma_bl30k's BL30K stage); null: all
    use_datasets: Optional[list[str]] = None
    seq_length: int = 8  # frames per training clip
    max_objects: int = 3  # objects per clip (selector length)
    crop_size: int = 480  # square training crop
    paste_probability: float = 0.5  # paste a second clip's objects when the first has < max_objects
    reverse_probability: float = 0.5  # play the clip backwards
    augmentation: AugmentationConfig = field(default_factory=AugmentationConfig)
    static: StaticConfig = field(default_factory=StaticConfig)

    def __post_init__(self) -> None:
        self.datasets = {
            name: _as_schema(value, VideoDatasetConfig, f"data.datasets.{name}")
            for name, value in self.datasets.items()
        }
        self.validate()

    def validate(self) -> None:
        for name in ("seq_length", "max_objects", "crop_size"):
            check_positive(f"data.{name}", getattr(self, name))
        check_probability("data.paste_probability", self.paste_probability)
        check_probability("data.reverse_probability", self.reverse_probability)
        for name, dataset in self.datasets.items():
            dataset.validate(f"data.datasets.{name}")
        if self.use_datasets is not None:
            unknown = [name for name in self.use_datasets if name not in self.datasets]
            if unknown or not self.use_datasets:
                raise ConfigError(
                    f"data.use_datasets={list(self.use_datasets)} must name some of data.datasets {sorted(self.datasets)}"
                )
        self.augmentation.validate()
        self.static.validate()
