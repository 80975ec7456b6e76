"""One query-transformer block: query read, self-attention, FFN, pixel read, pixel FFN."""

from __future__ import annotations

from typing import Callable

import torch.nn as nn
from torch import Tensor

from s3.model.group_blocks import CAResBlock
from s3.model.query.attention import PixelReadFromQueries, QueryFFN, QuerySelfAttention
from s3.model.query.cutie_read import MaskedCrossAttentionRead
from s3.model.query.discriminative_read import DiscriminativeQueryRead

# name -> builder(dim, num_heads, dq_norm_axis) of the "queries read from pixels" sub-layer.
QUERY_READS: dict[str, Callable[[int, int, str], nn.Module]] = {
    "discriminative": lambda dim, heads, dq_norm_axis: DiscriminativeQueryRead(dim, heads, dq_norm_axis),
    "cutie": lambda dim, heads, dq_norm_axis: MaskedCrossAttentionRead(dim, heads),
}


class QueryTransformerBlock(nn.Module):
    """x = read(x <- pixels); x = self_attn(x); x = ffn(x); p = p + attn(p <- x); p = pixel_ffn(p).

    ``read`` picks the first sub-layer: "discriminative" (S3's DQ read, default) or "cutie" (Cutie's
    masked cross-attention). ``dq_norm_axis`` is passed to the DQ read only.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        ffn_dim: int,
        read: str = "discriminative",
        dq_norm_axis: str = "queries",
    ) -> None:
        super().__init__()
        if read not in QUERY_READS:
            raise ValueError(
                f"QueryTransformerBlock: unknown read {read!r}; choose one of {sorted(QUERY_READS)}"
            )
        self.read_from_pixel = QUERY_READS[read](dim, num_heads, dq_norm_axis)
        self.self_attn = QuerySelfAttention(dim, num_heads)
        self.ffn = QueryFFN(dim, ffn_dim)
        self.read_from_query = PixelReadFromQueries(dim, num_heads)
        self.pixel_ffn = CAResBlock(dim, dim)

    def forward(
        self, queries: Tensor, pixel: Tensor, query_pe: Tensor, pixel_pe: Tensor, attn_mask: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Run the block.

        queries, query_pe: (B*N, Q, C); pixel: (B, N, C, h, w); pixel_pe: (B*N, h*w, C);
        attn_mask: bool (B*N*heads, Q, h*w), True = blocked.
        Returns queries (B*N, Q, C), pixel (B, N, C, h, w) and the read weights (B*N, heads, h*w, Q)
        (DQ similarity or Cutie attention probabilities).
        """
        batch, num_objects, dim, h, w = pixel.shape
        pixel_tokens = pixel.flatten(0, 1).flatten(2).transpose(1, 2)  # (B*N, HW, C)

        queries, read_weights = self.read_from_pixel(
            queries, pixel_tokens, query_pe, pixel_pe, attn_mask
        )
        queries = self.self_attn(queries, query_pe)
        queries = self.ffn(queries)

        pixel_tokens = self.read_from_query(pixel_tokens, queries, pixel_pe, query_pe)
        pixel_maps = pixel_tokens.transpose(1, 2).reshape(batch * num_objects, dim, h, w)
        pixel = self.pixel_ffn(pixel_maps).view(batch, num_objects, dim, h, w)
        return queries, pixel, read_weights
