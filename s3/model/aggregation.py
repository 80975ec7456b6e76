"""Combining per-object probabilities: soft aggregation with a background channel, and "other objects" masks."""

from __future__ import annotations

import torch
from torch import Tensor


def soft_aggregate(prob: Tensor, dim: int = 1) -> Tensor:
    """Soft aggregation of per-object probabilities into logits with a background channel.

    prob: (B, N, ...) in [0, 1] -> logits (B, N+1, ...), background first; computed in fp32.
    """
    prob = prob.float()
    background = torch.prod(1 - prob, dim=dim, keepdim=True)
    stacked = torch.cat([background, prob], dim=dim).clamp(1e-7, 1 - 1e-7)
    return torch.log(stacked / (1 - stacked))


def others_mask(masks: Tensor) -> Tensor:
    """For each object, the union of all other objects: (B, N, ...) -> (B, N, ...)."""
    return (masks.sum(dim=1, keepdim=True) - masks).clamp(0, 1)
