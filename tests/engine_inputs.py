"""Frames and masks that the engine tests of every architecture feed (``from engine_inputs import ...``;
pytest puts this folder on ``sys.path`` for ``tests/conftest.py``)."""

from __future__ import annotations

import torch

H, W = 40, 56  # frame size; S3's and STMA's tiny models pad it to 48x64 (a 3x4 token grid)


def images(n: int, seed: int = 0) -> list[torch.Tensor]:
    """n random RGB frames (3, H, W) in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(3, H, W, generator=g) for _ in range(n)]


def index_mask(boxes: dict[int, tuple[int, int, int, int]]) -> torch.Tensor:
    """(H, W) int64 object ids: each id fills its (top, left, bottom, right) box."""
    mask = torch.zeros(H, W, dtype=torch.int64)
    for obj, (top, left, bottom, right) in boxes.items():
        mask[top:bottom, left:right] = obj
    return mask


FIRST = index_mask({5: (2, 2, 20, 20), 17: (22, 30, 38, 54)})  # two objects on the first frame
