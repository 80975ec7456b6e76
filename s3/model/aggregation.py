"""Combining per-object probabilities: soft aggregation with a background channel, the winning
object per pixel, and "other objects" masks."""

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


def winning_channel(prob: Tensor) -> Tensor:
    """The index of the largest of C channels per pixel, the first one on ties: (C, ...) -> (...) int64.

    Equal to ``prob.argmax(dim=0)``, which torch runs about ten times slower on the CPU over a leading
    dimension (12 ms against 1 ms for 4 x 240 x 432), so every probabilities-to-label step uses this.
    """
    return prob.max(dim=0).indices


def object_id_map(prob: Tensor, object_ids: list[int]) -> Tensor:
    """Probabilities (K+1, ...) with channel 0 the background and channel i+1 object ``object_ids[i]``
    -> the winning object's id per pixel (...) int64, 0 = background."""
    lookup = torch.tensor([0, *object_ids], dtype=torch.int64, device=prob.device)
    return lookup[winning_channel(prob)]


def others_mask(masks: Tensor) -> Tensor:
    """For each object, the union of all other objects: (B, N, ...) -> (B, N, ...)."""
    return (masks.sum(dim=1, keepdim=True) - masks).clamp(0, 1)
