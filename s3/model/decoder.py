"""Mask decoder: upsamples the per-object memory readout to stride-4 mask logits and updates the sensory state."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from s3.model.group_blocks import GroupResBlock
from s3.model.memory.sensory import SensoryUpdater


def _upsample_groups_to(g: Tensor, size: tuple[int, int]) -> Tensor:
    """Bilinear (align_corners False) resize of a group tensor (B, N, C, h, w) to (B, N, C, *size)."""
    b, n = g.shape[:2]
    out = F.interpolate(g.flatten(0, 1), size=size, mode="bilinear", align_corners=False)
    return out.view(b, n, *out.shape[1:])


class MaskDecoder(nn.Module):
    """p8 = ``up_16_8``(up2(p16) + ``skip_proj8``(f8)); p4 = ``up_8_4``(up2(p8) + ``skip_proj4``(f4));
    logits = ``pred``(ReLU(p4)) in fp32. ``sensory_update`` (SensoryUpdater) refreshes the sensory
    state from p16, p8 and [p4, logits]; ``sensory=False`` builds the decoder without it (no sensory
    memory: pass ``sensory=None`` and ``update_sensory=False``).
    """

    def __init__(
        self,
        f8_dim: int,
        f4_dim: int,
        embed_dim: int = 256,
        sensory_dim: int = 256,
        up_dims: Sequence[int] = (256, 128, 128),
        sensory: bool = True,
    ) -> None:
        super().__init__()
        if len(up_dims) != 3:
            raise ValueError(f"MaskDecoder: up_dims needs 3 entries (strides 16, 8, 4), got {list(up_dims)}")
        if embed_dim != up_dims[0]:
            raise ValueError(f"MaskDecoder: embed_dim ({embed_dim}) must equal up_dims[0] ({up_dims[0]})")
        self.skip_proj8 = nn.Conv2d(f8_dim, up_dims[0], 1)
        self.skip_proj4 = nn.Conv2d(f4_dim, up_dims[1], 1)
        self.up_16_8 = GroupResBlock(up_dims[0], up_dims[1])
        self.up_8_4 = GroupResBlock(up_dims[1], up_dims[2])
        self.pred = nn.Conv2d(up_dims[2], 1, 3, padding=1)
        self.sensory_update = (
            SensoryUpdater(
                in_dims=(up_dims[0], up_dims[1], up_dims[2] + 1), mid_dim=sensory_dim, sensory_dim=sensory_dim
            )
            if sensory
            else None
        )

    def _decode_objects(
        self, skip8: Tensor, skip4: Tensor, p16: Tensor, sensory: Optional[Tensor], update_sensory: bool
    ) -> tuple[Optional[Tensor], Tensor]:
        """Projected skips (B, C', H/8, W/8), (B, C'', H/4, W/4); p16, sensory: (B, n, ., h, w)
        -> sensory (B, n, S, h, w), logits (B, n, H/4, W/4).
        """
        p8 = self.up_16_8(_upsample_groups_to(p16, skip8.shape[-2:]) + skip8.unsqueeze(1))
        p4 = self.up_8_4(_upsample_groups_to(p8, skip4.shape[-2:]) + skip4.unsqueeze(1))
        with torch.autocast(p4.device.type, enabled=False):
            logits = self.pred(F.relu(p4.flatten(0, 1).float())).view(*p4.shape[:2], 1, *p4.shape[-2:])
        if update_sensory:
            sensory = self.sensory_update(p16, p8, torch.cat([p4, logits], dim=2), sensory)
        return sensory, logits.squeeze(2)

    def forward(
        self,
        f8: Tensor,
        f4: Tensor,
        memory_readout: Tensor,
        sensory: Optional[Tensor],
        chunk_size: int = -1,
        update_sensory: bool = True,
    ) -> tuple[Optional[Tensor], Tensor]:
        """f8: (B, C8, H/8, W/8); f4: (B, C4, H/4, W/4); memory_readout: (B, N, C, h, w) with h = H/16;
        sensory: (B, N, S, h, w) -> sensory (B, N, S, h, w) (unchanged unless ``update_sensory``),
        logits (B, N, H/4, W/4) in fp32. ``chunk_size`` objects are decoded at a time (< 1: all at
        once); the result does not depend on it. Without sensory memory ``sensory`` is None and
        ``update_sensory`` False; None is returned in its place.
        """
        if update_sensory and (self.sensory_update is None or sensory is None):
            raise ValueError("MaskDecoder: update_sensory needs a sensory state and a decoder built with sensory=True")
        skip8 = self.skip_proj8(f8)
        skip4 = self.skip_proj4(f4)
        num_objects = memory_readout.shape[1]
        step = num_objects if chunk_size < 1 else chunk_size
        sensories, logits = [], []
        for start in range(0, num_objects, step):
            chunk = slice(start, start + step)
            chunk_sensory, chunk_logits = self._decode_objects(
                skip8, skip4, memory_readout[:, chunk], None if sensory is None else sensory[:, chunk], update_sensory
            )
            sensories.append(chunk_sensory)
            logits.append(chunk_logits)
        new_sensory = torch.cat(sensories, dim=1) if update_sensory else sensory
        return new_sensory, torch.cat(logits, dim=1)
