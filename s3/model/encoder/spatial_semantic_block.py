"""Spatial-semantic interaction block: semantic cross-attention, then deformable extractor units."""

from __future__ import annotations

import torch.nn as nn
from torch import Tensor

from s3.model.encoder.conv_ffn import ConvFFN
from s3.model.encoder.deformable_attention import MultiScaleDeformableAttention
from s3.model.encoder.semantic_attention import SemanticCrossAttention


class ExtractorUnit(nn.Module):
    """Spatial dependency modelling (paper eqs. 2-3) as two pre-LN residual steps.

    c = c + DeformAttn(LN_q(c), LN_v(vit patch tokens)); c = c + ConvFFN(LN_ffn(c)).
    All three LayerNorms use eps 1e-6.
    """

    def __init__(
        self, dim: int, num_heads: int, num_points: int, ffn_ratio: float = 0.25, drop_path: float = 0.0
    ) -> None:
        super().__init__()
        self.query_norm = nn.LayerNorm(dim, eps=1e-6)
        self.value_norm = nn.LayerNorm(dim, eps=1e-6)
        self.deform_attn = MultiScaleDeformableAttention(dim, num_heads, num_levels=1, num_points=num_points)
        self.ffn_norm = nn.LayerNorm(dim, eps=1e-6)
        self.ffn = ConvFFN(dim, int(dim * ffn_ratio), drop_path=drop_path)

    def forward(
        self,
        cnn_tokens: Tensor,
        patch_tokens: Tensor,
        reference_points: Tensor,
        spatial_shapes: Tensor,
        level_start_index: Tensor,
        size8: tuple[int, int],
        size16: tuple[int, int],
    ) -> Tensor:
        """cnn_tokens: (B, H8*W8 + h*w, C), stride-8 first; patch_tokens: (B, h*w, C) (the value level);
        reference_points: (B or 1, L, 1, 2); spatial_shapes: (1, 2) = [[h, w]]; level_start_index: (1,).
        Returns the updated cnn_tokens (B, H8*W8 + h*w, C).
        """
        attended = self.deform_attn(
            self.query_norm(cnn_tokens),
            reference_points,
            self.value_norm(patch_tokens),
            spatial_shapes,
            level_start_index,
        )
        cnn_tokens = cnn_tokens + attended
        return cnn_tokens + self.ffn(self.ffn_norm(cnn_tokens), size8, size16)


class SpatialSemanticBlock(nn.Module):
    """Semantic cross-attention (optional) followed by ``num_units`` extractor units (optional).

    The reference model uses one unit in blocks 0-2 and three in the last block; all units share the
    same ViT patch tokens and reference points.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        num_points: int,
        num_units: int = 1,
        semantic: bool = True,
        spatial: bool = True,
        ffn_ratio: float = 0.25,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        if not (semantic or spatial):
            raise ValueError("SpatialSemanticBlock: at least one of semantic and spatial must be True")
        if spatial and num_units < 1:
            raise ValueError(f"SpatialSemanticBlock: num_units must be >= 1 when spatial is on, got {num_units}")
        self.semantic_attn = SemanticCrossAttention(dim, num_heads) if semantic else None
        num_units = num_units if spatial else 0
        self.units = nn.ModuleList(
            [ExtractorUnit(dim, num_heads, num_points, ffn_ratio, drop_path) for _ in range(num_units)]
        )

    def forward(
        self,
        cnn_tokens: Tensor,
        patch_tokens: Tensor,
        cls_token: Tensor,
        reference_points: Tensor,
        spatial_shapes: Tensor,
        level_start_index: Tensor,
        size8: tuple[int, int],
        size16: tuple[int, int],
    ) -> Tensor:
        """cnn_tokens: (B, H8*W8 + h*w, C), stride-8 first; patch_tokens: (B, h*w, C); cls_token: (B, 1, C);
        geometry as in :class:`ExtractorUnit`. Returns the updated cnn_tokens (B, H8*W8 + h*w, C).
        """
        if self.semantic_attn is not None:
            cnn_tokens = self.semantic_attn(cnn_tokens, patch_tokens, cls_token)
        for unit in self.units:
            cnn_tokens = unit(
                cnn_tokens, patch_tokens, reference_points, spatial_shapes, level_start_index, size8, size16
            )
        return cnn_tokens
