"""Foreground/background attention mask of the query reads, from the auxiliary mask logits.

The first half of each object's queries may only look at that object's foreground pixels, the second
half only at the other pixels. A pixel is foreground of object k iff, after soft aggregation over the
objects, object k's logit is the largest (ties count as foreground). Query rows that would be
blocked everywhere are unblocked entirely.
"""

from __future__ import annotations

import torch
from torch import Tensor

from s3.model.aggregation import soft_aggregate


def foreground_attention_mask(
    aux_logits: Tensor, selector: Tensor | None, num_heads: int, num_queries: int
) -> Tensor:
    """Boolean attention mask (True = blocked) for the query reads.

    aux_logits: (B, N, h, w) per-object logits; selector: (B, N, 1, 1) 0/1 (padded objects are 0)
    or None. Returns (B*N*heads, Q, h*w) with row = (b*N + n) * heads + head and pixel index
    = row * w + column; the same mask for every head.
    """
    if num_queries % 2 != 0:
        raise ValueError(f"foreground_attention_mask: num_queries must be even, got {num_queries}")
    batch, num_objects, h, w = aux_logits.shape
    prob = torch.sigmoid(aux_logits)
    if selector is not None:
        prob = prob * selector
    aggregated = soft_aggregate(prob, dim=1)  # (B, N+1, h, w), background first
    foreground = aggregated[:, 1:] >= aggregated.max(dim=1, keepdim=True).values  # (B, N, h, w)

    is_foreground_query = torch.arange(num_queries, device=aux_logits.device) < num_queries // 2
    # A foreground query is blocked off the foreground, a background query on it.
    blocked = foreground.flatten(2)[:, :, None, :] != is_foreground_query[:, None]  # (B, N, Q, HW)
    blocked = blocked & ~blocked.all(dim=-1, keepdim=True)

    blocked = blocked.unsqueeze(2).expand(batch, num_objects, num_heads, num_queries, h * w)
    return blocked.reshape(batch * num_objects * num_heads, num_queries, h * w)
