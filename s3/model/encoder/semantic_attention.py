"""Semantic cross-attention: CNN tokens read global semantics from the frozen ViT (paper eq. 1)."""

from __future__ import annotations

import torch
import torch.nn as nn
from torch import Tensor


class SemanticCrossAttention(nn.Module):
    """Pre-LN cross-attention of the CNN tokens to the two tokens [CLS; mean patch token].

    As in the reference code, the residual is added to the NORMALISED CNN tokens.
    """

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim, eps=1e-5)
        self.attn = nn.MultiheadAttention(dim, num_heads, batch_first=True)

    def forward(self, cnn_tokens: Tensor, patch_tokens: Tensor, cls_token: Tensor) -> Tensor:
        """cnn_tokens: (B, L, C); patch_tokens: (B, hw, C); cls_token: (B, 1, C) -> (B, L, C)."""
        semantic_tokens = torch.cat([cls_token, patch_tokens.mean(dim=1, keepdim=True)], dim=1)  # (B, 2, C)
        normed = self.norm(cnn_tokens)
        attended, _ = self.attn(normed, semantic_tokens, semantic_tokens, need_weights=False)
        return normed + attended
