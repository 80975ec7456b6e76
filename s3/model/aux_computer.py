"""Auxiliary predictions for the auxiliary losses: a linear mask read-out of the sensory state and the
query transformer's aux logits, each soft-aggregated with a background channel.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from torch import Tensor

from s3.model.aggregation import soft_aggregate
from s3.model.group_blocks import GroupConv2d


def _aggregate_selected(logits: Tensor, selector: Tensor | None) -> Tensor:
    """Per-object logits (B, N, ...) -> sigmoid, times the 0/1 selector (B, N) -> aggregated (B, N+1, ...)."""
    prob = torch.sigmoid(logits.float())
    if selector is not None:
        prob = prob * selector.to(prob.dtype).view(*selector.shape[:2], *([1] * (prob.ndim - 2)))
    return soft_aggregate(prob, dim=1)


class AuxComputer(nn.Module):
    """``sensory_head`` (grouped 1x1 conv, S -> C+1) predicts per object a pixel-feature filter and a
    bias; the sensory mask logits are <pix_feat, filter> + bias.
    """

    def __init__(self, pixel_dim: int, sensory_dim: int) -> None:
        super().__init__()
        self.sensory_head = GroupConv2d(sensory_dim, pixel_dim + 1, 1)

    def forward(
        self, pix_feat: Tensor, sensory: Tensor, query_aux_logits: list[Tensor], selector: Tensor | None
    ) -> dict[str, Tensor]:
        """pix_feat: (B, C, h, w); sensory: (B, N, S, h, w); query_aux_logits: L maps (B, N, h, w);
        selector: (B, N) 0/1 real-object flags or None -> {"sensory_logits": (B, N+1, h, w),
        "query_logits": (B, N+1, L, h, w)}, background first, fp32.
        """
        head = self.sensory_head(sensory)
        sensory_logits = (pix_feat.unsqueeze(1) * head[:, :, :-1]).sum(dim=2) + head[:, :, -1]
        return {
            "sensory_logits": _aggregate_selected(sensory_logits, selector),
            "query_logits": _aggregate_selected(torch.stack(query_aux_logits, dim=2), selector),
        }
