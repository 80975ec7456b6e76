"""The attention and feed-forward sub-layers of a query-transformer block.

All attentions are standard multi-head attentions (packed q/k/v input projection, batch first,
no dropout); positional embeddings are added to queries and keys, never to values.
"""

from __future__ import annotations

import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor


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
        attended, _ = self.attn(with_pe, with_pe, queries_norm, need_weights=False)
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
        attended, _ = self.attn(pixels + pixel_pe, queries + query_pe, queries, need_weights=False)
        return pixels + attended
