"""The attention and feed-forward sub-layers of a query-transformer block.

All attentions are standard multi-head attentions (packed q/k/v input projection, batch first,
no dropout); positional embeddings are added to queries and keys, never to values. Their
parameters live in ``nn.MultiheadAttention`` modules; :func:`multi_head_attention` computes them.
"""

from __future__ import annotations

from typing import Optional

import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor


def multi_head_attention(
    attn: nn.MultiheadAttention,
    query: Tensor,
    key: Tensor,
    value: Tensor,
    blocked: Optional[Tensor] = None,
    need_weights: bool = False,
) -> tuple[Tensor, Optional[Tensor]]:
    """What ``attn(query, key, value, attn_mask=blocked)`` computes (batch first, no dropout), with
    the projections on contiguous tokens and the attention in ``F.scaled_dot_product_attention``.

    query: (B, Lq, C); key, value: (B, Lk, C); blocked: bool (B*heads, Lq, Lk), True = blocked,
    row = b * heads + head. Returns the output (B, Lq, C) and, with ``need_weights``, the per-head
    attention probabilities (B, heads, Lq, Lk) (else None).
    """
    batch, num_queries, dim = query.shape
    num_keys = key.shape[1]
    heads = attn.num_heads
    head_dim = dim // heads
    w_q, w_k, w_v = attn.in_proj_weight.chunk(3)
    b_q, b_k, b_v = attn.in_proj_bias.chunk(3)
    q = F.linear(query, w_q, b_q).view(batch, num_queries, heads, head_dim).transpose(1, 2)
    k = F.linear(key, w_k, b_k).view(batch, num_keys, heads, head_dim).transpose(1, 2)
    v = F.linear(value, w_v, b_v).view(batch, num_keys, heads, head_dim).transpose(1, 2)
    blocked = None if blocked is None else blocked.view(batch, heads, num_queries, num_keys)
    weights = None
    if need_weights:
        logits = (q * head_dim**-0.5) @ k.transpose(2, 3)
        if blocked is not None:
            logits = logits.masked_fill(blocked, float("-inf"))
        weights = logits.softmax(dim=-1)
        attended = weights @ v
    else:
        attended = F.scaled_dot_product_attention(q, k, v, attn_mask=None if blocked is None else ~blocked)
    return attn.out_proj(attended.transpose(1, 2).reshape(batch, num_queries, dim)), weights


class QuerySelfAttention(nn.Module):
    """Pre-LN self-attention among the queries; the residual is the NORMALISED input."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim, eps=1e-5)
        self.attn = nn.MultiheadAttention(dim, num_heads, batch_first=True)

    def forward(self, queries: Tensor, query_pe: Tensor) -> Tensor:
        """queries, query_pe: (B', Q, C) -> (B', Q, C) = xn + MHA(xn + pe, xn + pe, xn)."""
        queries_norm = self.norm(queries)
        with_pe = queries_norm + query_pe
        attended, _ = multi_head_attention(self.attn, with_pe, with_pe, queries_norm)
        return queries_norm + attended


class QueryFFN(nn.Module):
    """Pre-LN feed-forward network on the queries; the residual is the raw input."""

    def __init__(self, dim: int, ffn_dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim, eps=1e-5)
        self.fc1 = nn.Linear(dim, ffn_dim)
        self.fc2 = nn.Linear(ffn_dim, dim)

    def forward(self, queries: Tensor) -> Tensor:
        """queries: (B', Q, C) -> (B', Q, C) = x + fc2(relu(fc1(LN(x))))."""
        return queries + self.fc2(F.relu(self.fc1(self.norm(queries))))


class PixelReadFromQueries(nn.Module):
    """Pixels attend to the queries (no LayerNorm, no mask); residual on the raw pixel tokens."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, num_heads, batch_first=True)

    def forward(self, pixels: Tensor, queries: Tensor, pixel_pe: Tensor, query_pe: Tensor) -> Tensor:
        """pixels, pixel_pe: (B', HW, C); queries, query_pe: (B', Q, C) -> pixels (B', HW, C)."""
        attended, _ = multi_head_attention(self.attn, pixels + pixel_pe, queries + query_pe, queries)
        return pixels + attended
