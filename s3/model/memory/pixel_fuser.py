"""Pixel fuser: combines the memory readout, the sensory state and the last mask with the pixel features."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from s3.model.group_blocks import GroupConv2d, GroupFeatureFusionBlock


class PixelFuser(nn.Module):
    """p16 = readout + ``sensory_compress``([sensory, last mask, last others]) (grouped 1x1 conv),
    then ``fuser`` (GroupFeatureFusionBlock) mixes in the shared pixel features.
    """

    def __init__(self, pixel_dim: int, value_dim: int, sensory_dim: int) -> None:
        super().__init__()
        self.fuser = GroupFeatureFusionBlock(pixel_dim, value_dim, value_dim)
        self.sensory_compress = GroupConv2d(sensory_dim + 2, value_dim, 1)

    def forward(
        self,
        pix_feat: Tensor,
        readout: Tensor,
        sensory: Tensor,
        last_mask: Tensor,
        last_others: Tensor,
        chunk_size: int = -1,
    ) -> Tensor:
        """pix_feat: (B, C, h, w); readout: (B, N, CV, h, w); sensory: (B, N, S, h, w);
        last_mask, last_others: (B, N, H, W) (area-downsampled to h x w here) -> (B, N, CV, h, w).
        The fusion runs ``chunk_size`` objects at a time (< 1: all at once); the result does not
        depend on it.
        """
        size = sensory.shape[-2:]
        last_mask = F.interpolate(last_mask, size=size, mode="area")
        last_others = F.interpolate(last_others, size=size, mode="area")
        sensory_in = torch.cat([sensory, last_mask.unsqueeze(2), last_others.unsqueeze(2)], dim=2)
        p16 = readout + self.sensory_compress(sensory_in)
        num_objects = p16.shape[1]
        step = num_objects if chunk_size < 1 else chunk_size
        return torch.cat([self.fuser(pix_feat, p16[:, i : i + step]) for i in range(0, num_objects, step)], dim=1)
