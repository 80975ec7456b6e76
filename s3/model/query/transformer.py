"""The query (object) transformer: object queries and pixel features refine each other.

Prologue: queries and query PE from the object memory, pixel state and pixel PE from the fused pixel
features, first aux mask and attention mask. Then every block updates queries and pixels, and an aux
head after it gives the logits from which the next block's attention mask is computed.
"""

from __future__ import annotations

from typing import NamedTuple

import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from s3.model.group_blocks import GroupConv2d
from s3.model.positional_encoding import SinCosPositionalEncoding2D
from s3.model.query.attention_mask import foreground_attention_mask
from s3.model.query.block import QueryTransformerBlock

AREA_EPS = 1e-4


class AuxMaskHead(nn.Module):
    """ReLU then a per-object 1x1 conv to one logit map."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.proj = GroupConv2d(dim, 1, 1)

    def forward(self, pixel: Tensor) -> Tensor:
        """pixel: (B, N, C, h, w) -> logits (B, N, h, w)."""
        return self.proj(F.relu(pixel)).squeeze(2)


class PrologueOutput(NamedTuple):
    """What the transformer computes before its first block."""

    queries: Tensor  # (B*N, Q, C)
    query_pe: Tensor  # (B*N, Q, C)
    pixel: Tensor  # (B, N, C, h, w), the initial pixel state
    pixel_pe: Tensor  # (B*N, h*w, C)
    aux_logits: Tensor  # (B, N, h, w), from aux head 0
    attn_mask: Tensor  # bool (B*N*heads, Q, h*w), for block 0


class QueryTransformer(nn.Module):
    """Cutie's object transformer with a selectable query read (S3: the discriminative read).

    ``num_queries`` must equal the number of summaries per object in the object memory; the first
    half are foreground queries, the second half background queries. Embedding tables are N(0, 1)
    initialised (the nn.Embedding default).
    """

    def __init__(
        self,
        dim: int = 256,
        value_dim: int = 256,
        num_queries: int = 8,
        num_blocks: int = 5,
        num_heads: int = 8,
        ffn_dim: int = 2048,
        read: str = "discriminative",
        dq_norm_axis: str = "queries",
    ) -> None:
        super().__init__()
        if num_blocks < 1:
            raise ValueError(f"QueryTransformer: num_blocks must be >= 1, got {num_blocks}")
        self.value_dim = value_dim
        self.num_queries = num_queries
        self.num_heads = num_heads
        self.query_init = nn.Embedding(num_queries, dim)
        self.query_emb = nn.Embedding(num_queries, dim)
        self.summary_to_query_init = nn.Linear(value_dim, dim)
        self.summary_to_query_emb = nn.Linear(value_dim, dim)
        self.pixel_init_proj = GroupConv2d(dim, dim, 1)
        self.pixel_emb_proj = GroupConv2d(dim, dim, 1)
        self.spatial_pe = SinCosPositionalEncoding2D(dim)
        self.blocks = nn.ModuleList(
            QueryTransformerBlock(dim, num_heads, ffn_dim, read=read, dq_norm_axis=dq_norm_axis)
            for _ in range(num_blocks)
        )
        self.aux_heads = nn.ModuleList(AuxMaskHead(dim) for _ in range(num_blocks + 1))

    def attention_mask(self, aux_logits: Tensor, selector: Tensor | None) -> Tensor:
        """aux_logits (B, N, h, w) -> bool mask (B*N*heads, Q, h*w), True = blocked."""
        return foreground_attention_mask(aux_logits, selector, self.num_heads, self.num_queries)

    def prepare(self, pixel: Tensor, object_memory: Tensor, selector: Tensor | None = None) -> PrologueOutput:
        """Everything before block 0.

        pixel: (B, N, C, h, w) fused pixel features; object_memory: (B, N, T, Q, value_dim + 1), per
        time step Q area-weighted feature sums followed by their area; selector: (B, N, 1, 1) or None.
        """
        expected = (self.num_queries, self.value_dim + 1)
        if tuple(object_memory.shape[-2:]) != expected:
            raise ValueError(
                f"QueryTransformer: object memory must end in (num_queries, value_dim + 1) = {expected}, "
                f"got {tuple(object_memory.shape)}"
            )
        h, w = pixel.shape[-2:]
        sums, areas = object_memory[..., :-1], object_memory[..., -1:]
        values = (sums.sum(dim=2) / (areas.sum(dim=2) + AREA_EPS)).flatten(0, 1)  # (B*N, Q, value_dim)
        queries = self.query_init.weight + self.summary_to_query_init(values)
        query_pe = self.query_emb.weight + self.summary_to_query_emb(values)

        pixel_state = self.pixel_init_proj(pixel)
        pixel_emb = self.pixel_emb_proj(pixel).flatten(0, 1).flatten(2).transpose(1, 2)  # (B*N, HW, C)
        spatial = self.spatial_pe(h, w, device=pixel.device).flatten(0, 1)  # (HW, C)
        pixel_pe = spatial.to(pixel_emb.dtype) + pixel_emb

        aux_logits = self.aux_heads[0](pixel_state)
        attn_mask = self.attention_mask(aux_logits, selector)
        return PrologueOutput(queries, query_pe, pixel_state, pixel_pe, aux_logits, attn_mask)

    def forward(
        self,
        pixel: Tensor,
        object_memory: Tensor,
        selector: Tensor | None = None,
        need_aux: bool = False,
    ) -> tuple[Tensor, dict[str, Tensor | list[Tensor]]]:
        """Refine the pixel features with the object queries.

        pixel: (B, N, C, h, w); object_memory: (B, N, T, Q, value_dim + 1); selector: (B, N, 1, 1) or
        None. Returns the final pixel state (B, N, C, h, w) and an aux dict: empty unless
        ``need_aux``, then {"logits": num_blocks + 1 maps (B, N, h, w) (aux head 0 before the
        blocks, head i + 1 after block i), "attn_mask": head 0 of the mask computed from the last
        logits, bool (B, N, Q, h, w)}. Without ``need_aux`` the last aux head is skipped.
        """
        start = self.prepare(pixel, object_memory, selector)
        queries, pixel_state, attn_mask = start.queries, start.pixel, start.attn_mask
        logits = [start.aux_logits]
        last_block = len(self.blocks) - 1
        for i, (block, aux_head) in enumerate(zip(self.blocks, self.aux_heads[1:])):
            queries, pixel_state, _ = block(queries, pixel_state, start.query_pe, start.pixel_pe, attn_mask)
            if i < last_block or need_aux:
                logits.append(aux_head(pixel_state))
                attn_mask = self.attention_mask(logits[-1], selector)

        if not need_aux:
            return pixel_state, {}
        batch, num_objects, _, h, w = pixel_state.shape
        head0_mask = attn_mask.view(batch, num_objects, self.num_heads, self.num_queries, h, w)[:, :, 0]
        return pixel_state, {"logits": logits, "attn_mask": head0_mask}
