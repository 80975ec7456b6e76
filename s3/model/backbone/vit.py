"""The frozen plain ViT that feeds the spatial-semantic encoder.

Built from timm's ``VisionTransformer`` (pre-LN blocks, LayerScale, one CLS token, no register
tokens) with patch size 16 and a square positional table (37x37 for Depth Anything / DINOv2, whose
518/14 grid is reused at patch 16; 14x14 for MAE). The table is resized per input with bicubic
interpolation, DINOv2 style. The ViT is frozen: no parameter requires a gradient, it always stays
in eval mode, and every call runs under ``torch.no_grad()`` so no activation is kept for autograd.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import Attention
from timm.models.vision_transformer import VisionTransformer
from torch import Tensor

REDUCED_PRECISION = (torch.bfloat16, torch.float16)


class FrozenViTAttention(Attention):
    """timm's ViT self-attention (same parameters: ``qkv``, ``proj``), computed head by head with
    plain matrix products and a softmax when it runs in bfloat16/float16 on the CPU: there PyTorch's
    fused CPU kernel is slower than these GEMMs without AMX (1621 tokens of ViT-B: 84 ms a layer
    against 113-149 ms, one thread). Elsewhere ``F.scaled_dot_product_attention`` as in timm.
    """

    def forward(self, x: Tensor, attn_mask: Tensor | None = None, is_causal: bool = False) -> Tensor:
        """x: (B, N, C) -> (B, N, C); no mask (the frozen ViT attends everywhere)."""
        if attn_mask is not None or is_causal:
            raise ValueError("FrozenViTAttention: the frozen ViT attends to every token; no mask")
        batch, num_tokens, dim = x.shape
        qkv = self.qkv(x).reshape(batch, num_tokens, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # (B, heads, N, d)
        if qkv.device.type == "cpu" and qkv.dtype in REDUCED_PRECISION:
            heads = [
                torch.softmax(torch.mm(q[b, h], k[b, h].t()).mul_(self.scale), dim=-1) @ v[b, h]
                for b in range(batch)
                for h in range(self.num_heads)
            ]  # (N, d) each, batch-major then head-major
            out = torch.cat(heads, dim=-1).view(num_tokens, batch, dim).transpose(0, 1)
        else:
            out = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(batch, num_tokens, dim)
        return self.proj(out)


class FrozenViT(VisionTransformer):
    """A frozen timm ViT with per-input positional-table resizing and grouped block execution.

    Besides timm's parameters it holds ``mask_token`` (1, C), unused at run time but present in
    DINOv2 / Depth Anything checkpoints, so that those load strictly and the frozen parameter count
    matches the reference implementation.
    """

    def __init__(
        self,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        patch_size: int = 16,
        pos_grid: int = 37,
        mlp_ratio: float = 4.0,
        layer_scale: bool = True,
    ) -> None:
        super().__init__(
            img_size=pos_grid * patch_size,
            patch_size=patch_size,
            num_classes=0,
            embed_dim=embed_dim,
            depth=depth,
            num_heads=num_heads,
            mlp_ratio=mlp_ratio,
            qkv_bias=True,
            init_values=1.0 if layer_scale else None,
            class_token=True,
            reg_tokens=0,
            global_pool="token",
            attn_layer=FrozenViTAttention,
        )
        self.mask_token = nn.Parameter(torch.zeros(1, embed_dim))
        self.pos_grid = pos_grid
        self.depth = depth
        self.patch_size = patch_size
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> "FrozenViT":
        """The ViT is frozen: it ignores ``mode`` and always stays in eval mode."""
        return super().train(False)

    def group_bounds(self, num_groups: int) -> list[tuple[int, int]]:
        """Split the blocks into ``num_groups`` equal consecutive groups: [(0, 3), (3, 6), ...]."""
        if num_groups < 1 or self.depth % num_groups:
            raise ValueError(
                f"FrozenViT: depth {self.depth} cannot be split into {num_groups} equal block groups"
            )
        step = self.depth // num_groups
        return [(i * step, (i + 1) * step) for i in range(num_groups)]

    def resized_pos_embed(self, h: int, w: int) -> Tensor:
        """Positional table for an h x w patch grid: (1, 1 + h*w, C), CLS row first."""
        g = self.pos_grid
        if (h, w) == (g, g):
            return self.pos_embed
        cls_pos, patch_pos = self.pos_embed[:, :1], self.pos_embed[:, 1:]
        patch_pos = patch_pos.reshape(1, g, g, -1).permute(0, 3, 1, 2)
        # DINOv2's "+0.1" scale factors avoid an off-by-one from floating-point rounding.
        patch_pos = F.interpolate(
            patch_pos,
            scale_factor=((h + 0.1) / g, (w + 0.1) / g),
            mode="bicubic",
            align_corners=False,
        )
        if patch_pos.shape[-2:] != (h, w):
            raise RuntimeError(f"FrozenViT: resized position grid {tuple(patch_pos.shape[-2:])} != {(h, w)}")
        return torch.cat([cls_pos, patch_pos.flatten(2).transpose(1, 2)], dim=1)

    def prepare_tokens(self, image: Tensor) -> Tensor:
        """image: (B, 3, H, W) normalised, H and W multiples of the patch size
        -> tokens (B, 1 + h*w, C): CLS first, positional embeddings added."""
        p = self.patch_size
        if image.shape[-2] % p or image.shape[-1] % p:
            raise ValueError(f"FrozenViT: input {tuple(image.shape[-2:])} is not a multiple of patch size {p}")
        with torch.no_grad():
            patches = self.patch_embed.proj(image)  # (B, C, h, w)
            h, w = patches.shape[-2:]
            tokens = patches.flatten(2).transpose(1, 2)
            tokens = torch.cat([self.cls_token.expand(tokens.shape[0], -1, -1), tokens], dim=1)
            return tokens + self.resized_pos_embed(h, w)

    def forward_blocks(self, tokens: Tensor, start: int, end: int) -> Tensor:
        """Run blocks[start:end]: (B, 1 + h*w, C) -> (B, 1 + h*w, C), without autograd."""
        with torch.no_grad():
            for block in self.blocks[start:end]:
                tokens = block(tokens)
            return tokens

    def forward(self, image: Tensor) -> Tensor:  # type: ignore[override]
        """image: (B, 3, H, W) -> final normalised tokens (B, 1 + h*w, C)."""
        tokens = self.forward_blocks(self.prepare_tokens(image), 0, self.depth)
        with torch.no_grad():
            return self.norm(tokens)
