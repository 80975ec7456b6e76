"""Static-image pre-training: short clips made by randomly warping one image and its mask.

Image sets are folders of ``<name>.jpg`` + ``<name>.png`` pairs, either flat (DUTS, ECSSD,
BIG, HRSOD) or one folder per class (FSS-1000). Masks are binary: grey value >= 128 is the object.

A clip (Cutie's pre-training recipe, without the optional thin-plate-spline warp) is made of:
1. clip-wide: zoom (affine scale 0.5-2) and horizontal flip, colour jitter and random grayscale;
2. per frame: affine (rotation +-20 deg, scale 0.5-2, shear 10 deg), resize so the short side is
   ``crop_size``, random ``crop_size`` square crop, and a weaker colour jitter.
Image and mask share every geometric draw (mask nearest-neighbour, fill 0; image fill = mean colour).
The switches of ``data.augmentation`` apply to video clips only; this recipe is fixed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as F

from s3.config.validation import InputError
from s3.data.frames import read_rgb
from s3.data.palette import MaskFileError, read_mask
from s3.data.transforms import CROP_DRAWS, apply_jitter, sample_jitter
from s3.data.vos_dataset import MAX_RANDOM_RESTARTS, Clip, item_rng, name_salt, to_training_sample

CLIP_SCALE = (0.5, 2.0)
FRAME_ROTATION_DEGREES = 20.0
FRAME_SCALE = (0.5, 2.0)
FRAME_SHEAR_DEGREES = 10.0
CLIP_JITTER = [0.1, 0.05, 0.05, 0.05]
GRAYSCALE_PROBABILITY = 0.05
FRAME_JITTER = [0.1, 0.05, 0.05, 0.0]
MASK_THRESHOLD = 128


def list_image_pairs(root: Path, layout: str) -> list[tuple[Path, Path]]:
    """(image, mask) pairs under ``root``: ``flat`` or ``class_folders`` layout, sorted by path."""
    folders = [root] if layout == "flat" else sorted(p for p in root.iterdir() if p.is_dir())
    pairs = []
    for folder in folders:
        for image in sorted(folder.glob("*.jpg")):
            mask = image.with_suffix(".png")
            if mask.is_file():
                pairs.append((image, mask))
    return pairs


def read_pair(image_path: Path, mask_path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 image (3, H, W) and binary int64 mask (H, W)."""
    rgb = read_rgb(image_path)
    grey = read_mask(mask_path, grey=True)
    if grey.shape != rgb.shape[:2]:
        raise MaskFileError(f"{mask_path}: mask size {grey.shape} differs from image size {rgb.shape[:2]}")
    mask = torch.from_numpy((grey >= MASK_THRESHOLD).astype(np.int64))
    return torch.from_numpy(rgb).permute(2, 0, 1).contiguous(), mask


class StaticClipDataset(Dataset):
    """Pre-training clips from one image set; length = multiplier x number of images."""

    def __init__(
        self,
        name: str,
        pairs: list[tuple[Path, Path]],
        *,
        multiplier: int,
        seq_length: int,
        crop_size: int,
        max_objects: int,
        fill: list[int],
        seed: int,
    ) -> None:
        if not pairs:
            raise ValueError(f"image set {name}: no <name>.jpg + <name>.png pairs found")
        self.name = name
        self.pairs = pairs
        self.multiplier = multiplier
        self.seq_length = seq_length
        self.crop_size = crop_size
        self.max_objects = max_objects
        self.fill = [v / 255.0 for v in fill]
        self.seed = seed
        self.epoch = 0
        self.salt = name_salt(name)

    def __len__(self) -> int:
        return self.multiplier * len(self.pairs)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose clips ``__getitem__`` returns.

        DataLoader workers copy the dataset when an iterator starts: call this before ``iter(loader)``
        (persistent workers keep the epoch they were started with).
        """
        self.epoch = epoch

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < len(self):
            raise IndexError(f"image set {self.name}: index {index} out of range [0, {len(self)})")
        rng = item_rng(self.seed, self.epoch, self.salt, index)
        pair_index = index % len(self.pairs)
        for _ in range(MAX_RANDOM_RESTARTS):
            image_path, mask_path = self.pairs[pair_index]
            image, mask = read_pair(image_path, mask_path)
            draws = CROP_DRAWS if mask.any() else 0  # an image without object cannot make a clip
            for _ in range(draws):
                warped = self.make_clip(image, mask, rng)
                if warped is not None:
                    clip = Clip(
                        frames=warped[0], labels=warped[1], dataset=self.name,
                        video=f"{image_path.parent.name}/{image_path.stem}",
                        frame_names=[f"{image_path.stem}_{t}" for t in range(self.seq_length)],
                    )
                    return to_training_sample(clip, self.max_objects, rng)
            pair_index = int(rng.integers(len(self.pairs)))
        raise InputError(
            f"image set {self.name}: no clip with a visible object after {MAX_RANDOM_RESTARTS} images "
            f"(e.g. {self.pairs[0][1]}); are its masks empty?"
        )

    def _affine(
        self, image: torch.Tensor, mask: torch.Tensor, angle: float, scale: float, shear: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        kwargs: dict[str, Any] = dict(angle=angle, translate=[0, 0], scale=scale, shear=[shear, 0.0])
        image = F.affine(tv_tensors.Image(image), interpolation=InterpolationMode.BILINEAR, fill=self.fill, **kwargs)
        mask = F.affine(tv_tensors.Mask(mask), fill=0, **kwargs)
        return image, mask

    def _frame(
        self, image: torch.Tensor, mask: torch.Tensor, rng: np.random.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One frame: affine, short side to crop_size, random square crop, colour jitter."""
        image, mask = self._affine(
            image, mask,
            angle=float(rng.uniform(-FRAME_ROTATION_DEGREES, FRAME_ROTATION_DEGREES)),
            scale=float(rng.uniform(*FRAME_SCALE)),
            shear=float(rng.uniform(-FRAME_SHEAR_DEGREES, FRAME_SHEAR_DEGREES)),
        )
        image = F.resize(image, [self.crop_size], interpolation=InterpolationMode.BILINEAR, antialias=True)
        mask = F.resize(mask, list(image.shape[-2:]), interpolation=InterpolationMode.NEAREST_EXACT)
        height, width = image.shape[-2:]
        top = int(rng.integers(height - self.crop_size + 1))
        left = int(rng.integers(width - self.crop_size + 1))
        image = F.crop(image, top, left, self.crop_size, self.crop_size)
        mask = F.crop(mask, top, left, self.crop_size, self.crop_size)
        image = apply_jitter(image.as_subclass(torch.Tensor), sample_jitter(FRAME_JITTER, rng))
        return image, mask.as_subclass(torch.Tensor)

    def make_clip(
        self, image: torch.Tensor, mask: torch.Tensor, rng: np.random.Generator
    ) -> Optional[tuple[torch.Tensor, torch.Tensor]]:
        """float frames (T, 3, S, S) and int64 labels (T, S, S), or None if frame 0 lost the object."""
        image = F.to_dtype(image, torch.float32, scale=True)
        image, mask = self._affine(image, mask, angle=0.0, scale=float(rng.uniform(*CLIP_SCALE)), shear=0.0)
        if rng.random() < 0.5:
            image, mask = F.horizontal_flip(image), F.horizontal_flip(mask)
        image = apply_jitter(image.as_subclass(torch.Tensor), sample_jitter(CLIP_JITTER, rng))
        if rng.random() < GRAYSCALE_PROBABILITY:
            image = F.rgb_to_grayscale(image, num_output_channels=3)
        frames = [self._frame(image, mask.as_subclass(torch.Tensor), rng) for _ in range(self.seq_length)]
        labels = torch.stack([m for _, m in frames])
        if not labels[0].any():
            return None
        return torch.stack([f for f, _ in frames]).clamp_(0.0, 1.0), labels
