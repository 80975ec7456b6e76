"""Cutie's masked cross-attention read of the queries from the pixels (Cutie, Cheng et al. 2024).

The ablation alternative to :class:`~s3.model.query.discriminative_read.DiscriminativeQueryRead`,
with the same call signature so a query-transformer block can use either.
"""

from __future__ import annotations

import torch.nn as nn
from torch import Tensor

from s3.model.query.attention import multi_head_attention


class MaskedCrossAttentionRead(nn.Module):
    """qn = LN(q); out = qn + MHA(query qn + Pq, key P + Pp, value P, boolean mask)."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim, eps=1e-5)
        self.attn = nn.MultiheadAttention(dim, num_heads, batch_first=True)

    def forward(
        self, queries: Tensor, pixels: Tensor, query_pe: Tensor, pixel_pe: Tensor, attn_mask: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Masked multi-head cross-attention of the queries to the pixels.

        queries, query_pe: (B', Q, C); pixels, pixel_pe: (B', HW, C);
        attn_mask: bool (B'*heads, Q, HW), True = blocked, row = b' * heads + head; no row may be
        fully blocked. Returns the updated queries (B', Q, C) and the per-head attention
        probabilities (B', heads, HW, Q) (the layout of the DQ similarity).
        """
        queries_norm = self.norm(queries)
        read, weights = multi_head_attention(
            self.attn, queries_norm + query_pe, pixels + pixel_pe, pixels, blocked=attn_mask, need_weights=True
        )
        assert weights is not None
        return queries_norm + read, weights.transpose(2, 3)
