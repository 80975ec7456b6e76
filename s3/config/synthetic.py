"""Typed schema of the synthetic VOS video generator (``configs/make_synthetic.yaml``).

The defaults make small (240x432), hard-but-learnable videos for the CPU quickstart: objects travel
a good part of the frame, change scale, rotate, deform, occlude each other, leave and come back, and
look-alike distractors share their colours, so copying the first-frame mask scores poorly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from s3.config.validation import ConfigError, check_choice, check_probability

SYNTHETIC_LAYOUTS = ("davis", "ytvos")


def check_range(key: str, values: Sequence[float], low: float, high: float = float("inf")) -> None:
    """``values`` is a [min, max] pair with low <= min <= max <= high."""
    if len(values) != 2:
        raise ConfigError(f"{key} must be a [min, max] pair, got {list(values)}")
    if not low <= values[0] <= values[1] <= high:
        upper = "" if high == float("inf") else f" <= {high}"
        raise ConfigError(f"{key}={list(values)} must satisfy {low} <= min <= max{upper}")


@dataclass
class SplitSizes:
    """Number of videos per split; a split with 0 videos is not written."""

    train: int = 60  # every frame annotated in both layouts
    val: int = 20  # DAVIS ImageSets val.txt; YouTube-VOS "valid" (first-appearance annotations only)


@dataclass
class SyntheticConfig:
    """What to generate and how hard it is. Ranges are inclusive [min, max] pairs."""

    layout: str = "davis"  # davis | ytvos (folder layout, frame naming and annotation style)
    num_videos: SplitSizes = field(default_factory=SplitSizes)
    num_frames: list[int] = field(default_factory=lambda: [24, 36])  # frames per video
    frame_size: list[int] = field(default_factory=lambda: [240, 432])  # H, W (DAVIS size: [480, 854])
    num_objects: list[int] = field(default_factory=lambda: [1, 4])  # annotated objects per video
    seed: int = 0  # video i of a split uses numpy's Generator seeded with (seed, split, i)
    jpeg_quality: int = 90
    object_size: list[float] = field(default_factory=lambda: [0.1, 0.18])  # base radius / min(H, W)
    travel: list[float] = field(default_factory=lambda: [0.2, 0.5])  # start-to-end shift / frame diagonal
    path_curvature: float = 0.12  # sideways wander of the path through its middle keys / frame diagonal
    scale_range: list[float] = field(default_factory=lambda: [0.6, 1.6])  # size change relative to frame 0
    max_rotation_deg: float = 180.0  # total rotation over a video is uniform in [-max, max]
    nonrigid_prob: float = 0.6  # chance that an object deforms (the rest move rigidly)
    deformation: float = 0.15  # amplitude of the non-rigid warp, in object radii
    occlusion_prob: float = 0.5  # chance that an object's path is steered through another object's
    lookalike_prob: float = 0.5  # chance per video of an unannotated distractor with an object's colours
    leave_prob: float = 0.25  # chance that an object leaves the frame and comes back later
    late_prob: float = 0.3  # ytvos only: chance that an object (not object 1) first appears mid-video
    camera_pan: float = 0.08  # background shift over a video / frame size

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        check_choice("layout", self.layout, SYNTHETIC_LAYOUTS)
        for split in ("train", "val"):
            if getattr(self.num_videos, split) < 0:
                raise ConfigError(f"num_videos.{split} must be >= 0, got {getattr(self.num_videos, split)}")
        if self.seed < 0:
            raise ConfigError(f"seed must be >= 0, got {self.seed}")
        check_range("num_frames", self.num_frames, 8)
        check_range("num_objects", self.num_objects, 1, 255)
        if len(self.frame_size) != 2 or min(self.frame_size) < 32:
            raise ConfigError(f"frame_size must be [H, W] with both >= 32, got {list(self.frame_size)}")
        if not 1 <= self.jpeg_quality <= 100:
            raise ConfigError(f"jpeg_quality must be in [1, 100], got {self.jpeg_quality}")
        check_range("object_size", self.object_size, 0.01, 0.3)
        check_range("travel", self.travel, 0.0, 1.0)
        check_range("scale_range", self.scale_range, 0.1, 4.0)
        if self.max_rotation_deg < 0:
            raise ConfigError(f"max_rotation_deg must be >= 0, got {self.max_rotation_deg!r}")
        for name in ("nonrigid_prob", "occlusion_prob", "lookalike_prob", "leave_prob", "late_prob"):
            check_probability(name, getattr(self, name))
        for name in ("path_curvature", "deformation", "camera_pan"):
            if not 0.0 <= getattr(self, name) <= 0.5:
                raise ConfigError(f"{name} must be in [0, 0.5], got {getattr(self, name)!r}")

