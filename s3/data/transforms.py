"""Joint augmentation of a training clip: one random draw per clip, shared by image and mask.

The parameters are drawn from a caller-supplied ``numpy.random.Generator`` (never a global RNG).

Order (Cutie's main-training recipe): horizontal flip -> rotation + shear about the frame centre
(image fill = mean colour, mask fill = 0) -> random resized crop to a square -> colour jitter ->
random grayscale -> second colour jitter. A draw whose crop leaves the first frame without any
object is redrawn.

The geometry is applied in one resampling at the output size: for every output pixel the composed
inverse map (crop and resize, then the inverse rotation + shear, then the flip) gives the source
position it reads, and every frame of the clip, image and mask alike, reads the same positions
(masks nearest-neighbour, images bilinear after an antialiased shrink to about the output's scale),
and only the window of the frame those positions touch is converted to float and shrunk. Warping the
whole frame first and cropping after, as torchvision's transforms in sequence do, gives the same
geometry but costs several times more where the crop is much smaller than the frame.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as nnf
from torchvision.transforms.v2 import functional as F

from s3.config.data import AugmentationConfig

CROP_DRAWS = 5  # geometry draws tried before giving up on a clip whose first frame ends up empty
_CROP_SAMPLING_TRIES = 10
_JITTER_OPS = ("brightness", "contrast", "saturation", "hue")
_ADJUST = {
    "brightness": F.adjust_brightness,
    "contrast": F.adjust_contrast,
    "saturation": F.adjust_saturation,
    "hue": F.adjust_hue,
}

JitterDraw = tuple[tuple[str, float], ...]


@dataclass(frozen=True)
class GeometryDraw:
    """One clip's geometric parameters."""

    flip: bool
    angle: float  # degrees, counter-clockwise
    shear: float  # horizontal shear in degrees
    crop: tuple[int, int, int, int]  # top, left, height, width of the crop in the warped frame


def sample_crop(
    height: int, width: int, scale: tuple[float, float], ratio: tuple[float, float], rng: np.random.Generator
) -> tuple[int, int, int, int]:
    """A random crop (top, left, h, w) covering ``scale`` of the area with aspect ``ratio`` (w / h).

    After ten unlucky draws it falls back to the largest centred crop whose aspect is in range.
    """
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(_CROP_SAMPLING_TRIES):
        area = height * width * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(*log_ratio))
        crop_w, crop_h = round(math.sqrt(area * aspect)), round(math.sqrt(area / aspect))
        if 0 < crop_w <= width and 0 < crop_h <= height:
            top = int(rng.integers(0, height - crop_h + 1))
            left = int(rng.integers(0, width - crop_w + 1))
            return top, left, crop_h, crop_w
    frame_ratio = width / height
    crop_w, crop_h = width, height
    if frame_ratio < ratio[0]:
        crop_h = round(width / ratio[0])
    elif frame_ratio > ratio[1]:
        crop_w = round(height * ratio[1])
    return (height - crop_h) // 2, (width - crop_w) // 2, crop_h, crop_w


def sample_jitter(strengths: list[float], rng: np.random.Generator) -> JitterDraw:
    """Colour-jitter factors in a random order; ``strengths`` = [brightness, contrast, saturation, hue].

    Brightness/contrast/saturation factors are uniform in [1 - s, 1 + s], the hue shift in [-h, h];
    operations with strength 0 are left out.
    """
    draw = []
    for op in rng.permutation(len(_JITTER_OPS)):
        name, strength = _JITTER_OPS[op], strengths[op]
        if strength > 0:
            centre = 0.0 if name == "hue" else 1.0
            draw.append((name, float(rng.uniform(centre - strength, centre + strength))))
    return tuple(draw)


def apply_jitter(images: torch.Tensor, draw: JitterDraw) -> torch.Tensor:
    """Apply a jitter draw to float images (..., 3, H, W) in [0, 1]."""
    for name, factor in draw:
        images = _ADJUST[name](images, factor)
    return images


class ClipAugmentation:
    """Augment a clip to ``crop_size`` x ``crop_size`` with one draw of every random parameter."""

    def __init__(self, cfg: AugmentationConfig, crop_size: int) -> None:
        self.cfg = cfg
        self.crop_size = crop_size
        self.fill = [v / 255.0 for v in cfg.fill]

    def sample_geometry(self, height: int, width: int, rng: np.random.Generator) -> GeometryDraw:
        """Draw flip, rotation, shear and crop for a clip of frames of size (height, width)."""
        cfg = self.cfg
        flip = bool(rng.random() < 0.5) and cfg.flip
        angle = float(rng.uniform(-cfg.rotation_degrees, cfg.rotation_degrees)) if cfg.affine else 0.0
        shear = float(rng.uniform(-cfg.shear_degrees, cfg.shear_degrees)) if cfg.affine else 0.0
        if cfg.random_crop:
            crop = sample_crop(height, width, tuple(cfg.crop_scale), tuple(cfg.crop_ratio), rng)
        else:
            crop = (0, 0, height, width)
        return GeometryDraw(flip=flip, angle=angle, shear=shear, crop=crop)

    def source_positions(self, draw: GeometryDraw, height: int, width: int) -> torch.Tensor:
        """(S, S, 2) float64 (x, y): where in the original (height, width) frame every output pixel
        of the S x S crop reads, pixel centres at integer positions."""
        size = self.crop_size
        top, left, crop_h, crop_w = draw.crop
        centres = torch.arange(size, dtype=torch.float64) + 0.5
        ys, xs = torch.meshgrid(top + centres * (crop_h / size), left + centres * (crop_w / size), indexing="ij")
        if self.cfg.affine:  # undo p' = R(angle) @ Shear(shear) @ p about the frame centre (y down)
            angle, shear = math.radians(draw.angle), math.radians(draw.shear)
            forward = torch.tensor(
                [[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]], dtype=torch.float64
            ) @ torch.tensor([[1.0, -math.tan(shear)], [0.0, 1.0]], dtype=torch.float64)
            inverse = torch.linalg.inv(forward)
            dx, dy = xs - width / 2, ys - height / 2
            xs = inverse[0, 0] * dx + inverse[0, 1] * dy + width / 2
            ys = inverse[1, 0] * dx + inverse[1, 1] * dy + height / 2
        xs, ys = xs - 0.5, ys - 0.5  # continuous edges -> pixel-centre positions
        if draw.flip:
            xs = (width - 1) - xs
        return torch.stack([xs, ys], dim=-1)

    def output_shrink(self, draw: GeometryDraw) -> float:
        """Output pixels per source pixel of the draw's crop (the mean of its two scale factors)."""
        return self.crop_size / math.sqrt(draw.crop[2] * draw.crop[3])

    def recolour(self, frames: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        """Colour jitter, random grayscale, second jitter (clip-wide unless configured per frame)."""
        cfg = self.cfg
        frames = apply_jitter(frames, sample_jitter(cfg.jitter, rng))
        if rng.random() < cfg.grayscale_probability:
            frames = F.rgb_to_grayscale(frames, num_output_channels=3)
        if cfg.second_jitter_per_frame:
            return torch.stack([apply_jitter(frame, sample_jitter(cfg.second_jitter, rng)) for frame in frames])
        return apply_jitter(frames, sample_jitter(cfg.second_jitter, rng))

    def __call__(
        self, frames: torch.Tensor, labels: torch.Tensor, rng: np.random.Generator
    ) -> Optional[tuple[torch.Tensor, torch.Tensor]]:
        """Augment uint8 frames (T, 3, H, W) and integer labels (T, H, W).

        Returns float32 frames in [0, 1] and int64 labels, both ``crop_size`` square, or None when
        none of ``CROP_DRAWS`` geometry draws keeps an object in the first frame.
        """
        height, width = labels.shape[-2:]
        for _ in range(CROP_DRAWS):
            draw = self.sample_geometry(height, width, rng)
            positions = self.source_positions(draw, height, width)
            if resample_labels(labels[:1], positions).any():
                break
        else:
            return None
        video = resample_frames(frames, positions, self.output_shrink(draw), self.fill)
        if self.cfg.color:
            video = self.recolour(video, rng)
        return video.clamp_(0.0, 1.0), resample_labels(labels, positions).long()


def resample_labels(labels: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Label maps (T, H, W) read nearest-neighbour at ``positions`` (S, S, 2) (x, y): (T, S, S), 0 where a
    position falls outside the frame."""
    height, width = labels.shape[-2:]
    xs, ys = torch.floor(positions + 0.5).long().unbind(-1)
    inside = (xs >= 0) & (xs < width) & (ys >= 0) & (ys < height)
    picked = labels[:, ys.clamp(0, height - 1), xs.clamp(0, width - 1)]
    return torch.where(inside, picked, torch.zeros((), dtype=labels.dtype))


def resample_frames(frames: torch.Tensor, positions: torch.Tensor, shrink: float, fill: list[float]) -> torch.Tensor:
    """Frames (T, 3, H, W), uint8 or float in [0, 1], read bilinearly at ``positions`` (S, S, 2) (x, y):
    float32 (T, 3, S, S), ``fill`` (RGB in [0, 1]) outside the frame.

    Only the window of the frame that the positions (plus the filters' reach) touch is converted and
    resampled. Where ``shrink`` < 1 (a crop larger than the output) the window is first shrunk by it,
    antialiased, so that the bilinear read does not alias.
    """
    height, width = frames.shape[-2:]
    reach = 2 + (math.ceil(2 / shrink) if shrink < 1 else 0)  # source pixels a read or the shrink filter touches
    x_min, y_min = positions.amin(dim=(0, 1)).tolist()
    x_max, y_max = positions.amax(dim=(0, 1)).tolist()
    left, right = max(0, math.floor(x_min) - reach), min(width, math.ceil(x_max) + reach + 1)
    top, bottom = max(0, math.floor(y_min) - reach), min(height, math.ceil(y_max) + reach + 1)
    fill_colour = torch.tensor(fill, dtype=torch.float32).view(1, 3, 1, 1)
    if left >= right or top >= bottom:  # every position lies outside the frame
        return fill_colour.expand(frames.shape[0], 3, *positions.shape[:2]).clone()
    window = F.to_dtype(frames[..., top:bottom, left:right], torch.float32, scale=True)
    window_h, window_w = bottom - top, right - left
    grid = torch.stack(  # normalised to the window, align_corners=False: independent of the shrunk size
        [(positions[..., 0] - left + 0.5) * (2 / window_w) - 1, (positions[..., 1] - top + 0.5) * (2 / window_h) - 1],
        dim=-1,
    ).to(torch.float32)
    if shrink < 1:
        size = (max(1, round(window_h * shrink)), max(1, round(window_w * shrink)))
        window = nnf.interpolate(window, size=size, mode="bilinear", align_corners=False, antialias=True)
    warped = nnf.grid_sample(
        window - fill_colour, grid.expand(frames.shape[0], -1, -1, -1), mode="bilinear", padding_mode="zeros",
        align_corners=False,
    )
    return warped + fill_colour
