"""Semantic cross-attention of the CNN tokens to the ViT's [CLS; mean patch token]."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor


class SemanticCrossAttention(nn.Module):
    """Pre-LN cross-attention of the CNN tokens to the two tokens [CLS; mean patch token].

    As in the reference code, the residual is added to the NORMALISED CNN tokens. ``attn`` holds
    the parameters of a standard ``nn.MultiheadAttention`` (packed q/k/v projection, output
    projection); :meth:`attend` computes exactly that attention, re-associated for few keys.
    """

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim, eps=1e-5)
        self.attn = nn.MultiheadAttention(dim, num_heads, batch_first=True)

    @staticmethod
    def semantic_tokens(patch_tokens: Tensor, cls_token: Tensor) -> Tensor:
        """patch_tokens: (B, hw, C); cls_token: (B, 1, C) -> keys (B, 2, C) = [CLS; mean patch token]."""
        return torch.cat([cls_token, patch_tokens.mean(dim=1, keepdim=True)], dim=1)

    def attend(self, tokens: Tensor, keys: Tensor) -> Tensor:
        """``attn(tokens, keys, keys)`` for a handful of keys: tokens (B, L, C), keys (B, K, C) -> (B, L, C).

        With K keys per head h, the logits x.W_qh^T.k_hj + b_qh.k_hj are one (C x heads*K) product per
        token, and the output sum_hj p_hj W_o,h v_hj + b_o another: two GEMMs of width heads*K instead
        of two C x C projections of every token (K = 2, 12 heads: 24 instead of 768 columns).
        """
        batch, num_tokens, dim = tokens.shape
        num_keys = keys.shape[1]
        heads = self.attn.num_heads
        head_dim = dim // heads
        w_q, w_k, w_v = self.attn.in_proj_weight.chunk(3)
        b_q, b_k, b_v = self.attn.in_proj_bias.chunk(3)
        out_proj = self.attn.out_proj
        with torch.autocast(tokens.device.type, enabled=False):  # the few-key maps: in the parameters' dtype
            keys = keys.to(w_k.dtype)
            key = F.linear(keys, w_k, b_k).view(batch, num_keys, heads, head_dim) * head_dim**-0.5
            value = F.linear(keys, w_v, b_v).view(batch, num_keys, heads, head_dim)
            logit_map = torch.einsum("hdc,bjhd->bchj", w_q.view(heads, head_dim, dim), key)  # (B, C, heads, K)
            logit_bias = torch.einsum("hd,bjhd->bhj", b_q.view(heads, head_dim), key)  # (B, heads, K)
            output_map = torch.einsum("chd,bjhd->bhjc", out_proj.weight.view(dim, heads, head_dim), value)
        logits = torch.baddbmm(logit_bias.flatten(1).unsqueeze(1), tokens, logit_map.flatten(2))
        probs = logits.view(batch, num_tokens, heads, num_keys).softmax(dim=-1)
        return torch.baddbmm(out_proj.bias.expand(batch, 1, dim), probs.flatten(2), output_map.flatten(1, 2))

    def forward(self, cnn_tokens: Tensor, patch_tokens: Tensor, cls_token: Tensor) -> Tensor:
        """cnn_tokens: (B, L, C); patch_tokens: (B, hw, C); cls_token: (B, 1, C) -> (B, L, C)."""
        normed = self.norm(cnn_tokens)
        return normed + self.attend(normed, self.semantic_tokens(patch_tokens, cls_token))
