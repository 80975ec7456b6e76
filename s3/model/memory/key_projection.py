"""Key projection: memory/query keys, shrinkage and selection from the stride-16 features."""

from __future__ import annotations

import torch
import torch.nn as nn
from torch import Tensor


class KeyProjection(nn.Module):
    """``feat_proj`` (1x1, in -> mid), then three 3x3 heads on the projected map:
    ``key_proj`` (mid -> key, orthogonal weight, zero bias), ``shrinkage_proj`` (mid -> 1) and
    ``selection_proj`` (mid -> key). Runs in fp32 with autocast disabled.
    """

    def __init__(self, in_dim: int, mid_dim: int, key_dim: int) -> None:
        super().__init__()
        self.feat_proj = nn.Conv2d(in_dim, mid_dim, 1)
        self.key_proj = nn.Conv2d(mid_dim, key_dim, 3, padding=1)
        self.shrinkage_proj = nn.Conv2d(mid_dim, 1, 3, padding=1)
        self.selection_proj = nn.Conv2d(mid_dim, key_dim, 3, padding=1)
        nn.init.orthogonal_(self.key_proj.weight)
        nn.init.zeros_(self.key_proj.bias)

    def forward(
        self, f16: Tensor, need_shrinkage: bool = True, need_selection: bool = True
    ) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """f16: (B, C, h, w) -> key (B, CK, h, w), shrinkage (B, 1, h, w) = proj^2 + 1 (>= 1) or None,
        selection (B, CK, h, w) = sigmoid(proj) in (0, 1) or None.
        """
        with torch.autocast(f16.device.type, enabled=False):
            feat = self.feat_proj(f16.float())
            key = self.key_proj(feat)
            shrinkage = self.shrinkage_proj(feat).pow(2) + 1 if need_shrinkage else None
            selection = torch.sigmoid(self.selection_proj(feat)) if need_selection else None
        return key, shrinkage, selection
