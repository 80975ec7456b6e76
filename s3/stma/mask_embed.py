"""Reference mask embedding: a mask patch-embedded into tokens, added to a reference frame's tokens."""

from __future__ import annotations

import torch.nn as nn
from torch import Tensor

from s3.stma.convvit import VIT_PATCH


class MaskPatchEmbedding(nn.Module):
    """``proj``: a 16x16, stride-16 convolution of one soft mask channel to C channels."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(1, dim, kernel_size=VIT_PATCH, stride=VIT_PATCH)

    def forward(self, masks: Tensor) -> Tensor:
        """masks: (..., H, W) in [0, 1] -> tokens (..., L, C), L = (H/16) * (W/16) row-major."""
        lead = masks.shape[:-2]
        tokens = self.proj(masks.reshape(-1, 1, *masks.shape[-2:]))
        return tokens.flatten(2).transpose(1, 2).reshape(*lead, -1, tokens.shape[1])
