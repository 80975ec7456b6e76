"""Padding frames to a multiple of the network stride, and removing the padding again."""

from __future__ import annotations

import math

import torch.nn.functional as F
from torch import Tensor

Pads = tuple[int, int, int, int]  # (left, right, top, bottom), as F.pad takes them


def pad_to_multiple(image: Tensor, multiple: int) -> tuple[Tensor, Pads]:
    """Zero-pad the last two axes, centred, to the next multiple of ``multiple``.

    image: (..., H, W) -> (..., H', W') with H', W' multiples of ``multiple``; also returns the pads.
    """
    if multiple < 1:
        raise ValueError(f"pad_to_multiple: multiple must be >= 1, got {multiple}")
    h, w = image.shape[-2:]
    if h < 1 or w < 1:
        raise ValueError(f"pad_to_multiple: cannot pad an empty image of size {h}x{w}")
    new_h = math.ceil(h / multiple) * multiple
    new_w = math.ceil(w / multiple) * multiple
    top, left = (new_h - h) // 2, (new_w - w) // 2
    pads = (left, new_w - w - left, top, new_h - h - top)
    if new_h == h and new_w == w:
        return image, pads
    return F.pad(image, pads), pads


def unpad(x: Tensor, pads: Pads) -> Tensor:
    """Undo :func:`pad_to_multiple` on the last two axes (same resolution as the padded input)."""
    left, right, top, bottom = pads
    h, w = x.shape[-2:]
    return x[..., top : h - bottom, left : w - right]
