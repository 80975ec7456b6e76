"""Discriminative query read ("DQ"): object queries read from pixels by hard per-head selection.

Replaces Cutie's masked cross-attention as the first sub-layer of every query-transformer block
(paper section 3.3). For every (object, head, query) the most similar unblocked pixel is
selected by an argmax; its head slice becomes that query's "salient" token. The selected tokens and
the queries are mixed, normalised, scaled and projected back onto the (normalised) queries.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

# Axis of the (B', Q, C) correspondence tensor that the L2 normalisation runs over.
NORM_AXES: dict[str, int] = {
    "queries": 1,  # official code: across the queries, per channel
    "channels": 2,  # paper eq. (5): across the channels, per query
}


class DiscriminativeQueryRead(nn.Module):
    """Queries read one selected pixel token per head (paper eqs. 4-6).

    ``norm_axis="queries"`` reproduces the official code (the correspondence is normalised over the
    query axis); ``"channels"`` is the paper's eq. (5).
    """

    def __init__(self, dim: int, num_heads: int, norm_axis: str = "queries") -> None:
        super().__init__()
        if dim % num_heads != 0:
            raise ValueError(f"DiscriminativeQueryRead: dim {dim} is not divisible by num_heads {num_heads}")
        if norm_axis not in NORM_AXES:
            raise ValueError(
                f"DiscriminativeQueryRead: unknown norm_axis {norm_axis!r}; choose one of {sorted(NORM_AXES)}"
            )
        self.num_heads = num_heads
        self.norm_axis = norm_axis
        self.norm = nn.LayerNorm(dim, eps=1e-5)
        self.mix_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)
        self.alpha = nn.Parameter(torch.ones(1, 1, dim))

    def forward(
        self, queries: Tensor, pixels: Tensor, query_pe: Tensor, pixel_pe: Tensor, attn_mask: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Update the queries from their selected pixel tokens.

        queries, query_pe: (B', Q, C); pixels, pixel_pe: (B', HW, C);
        attn_mask: bool (B'*heads, Q, HW), True = blocked, row = b' * heads + head. Rows must not be
        fully blocked (the mask rule unblocks them).
        Returns the updated queries (B', Q, C) and the similarity (B', heads, HW, Q), -inf where
        blocked.
        """
        batch, num_queries, dim = queries.shape
        num_pixels = pixels.shape[1]
        heads, head_dim = self.num_heads, dim // self.num_heads

        queries_norm = self.norm(queries)
        query_keys = F.normalize(queries_norm + query_pe, dim=-1)  # over all C channels
        pixel_keys = F.normalize(pixels + pixel_pe, dim=-1)
        query_heads = query_keys.view(batch, num_queries, heads, head_dim).transpose(1, 2)  # (B',H,Q,d)
        pixel_heads = pixel_keys.view(batch, num_pixels, heads, head_dim).transpose(1, 2)  # (B',H,HW,d)

        similarity = pixel_heads @ query_heads.transpose(2, 3)  # (B', H, HW, Q)
        blocked = attn_mask.view(batch, heads, num_queries, num_pixels).transpose(2, 3)
        similarity = similarity.masked_fill(blocked, float("-inf"))

        best_pixel = similarity.argmax(dim=2)  # (B', H, Q)
        selected = pixel_heads.gather(2, best_pixel.unsqueeze(-1).expand(-1, -1, -1, head_dim))
        selected = selected.transpose(1, 2).reshape(batch, num_queries, dim)  # heads concatenated

        correspondence = self.mix_proj(selected * query_keys)
        correspondence = F.normalize(correspondence, dim=NORM_AXES[self.norm_axis])
        out = self.out_proj(self.alpha * correspondence + selected)
        return out + queries_norm, similarity
