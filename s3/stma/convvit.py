"""The trainable STMA backbones: ConvViT-B (the paper's) and the plain ViT-B/16 of Table 2.

ConvViT (ConvMAE's hybrid): two convolutional stages at strides 4 and 8, a stride-2 patch merge
to stride 16, a linear token projection, a fixed 2-D sin-cos position table, then transformer
blocks and a final LayerNorm. The transformer blocks are the STML blocks (:mod:`s3.stma.stml`): the
backbone only runs the per-frame stem; the association of frames and objects runs its ``blocks``.

Attribute names follow the ConvMAE / MAE checkpoints where they are clear (``patch_embed1-4``,
``blocks1-2``, ``norm``); ConvMAE's ``blocks3`` is ``blocks`` here (for both backbones) and the
convolutional blocks' ``conv1`` / ``attn`` / ``conv2`` are ``pointwise_in`` / ``depthwise`` /
``pointwise_out`` (:mod:`s3.stma.weights` renames them on loading).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn as nn
from torch import Tensor

from s3.model.encoder.vitdet_fpn import ChannelLayerNorm
from s3.stma.stml import TRANSFORMER_LN_EPS, AssociationBlock

CONV_STAGE_PATCHES = (4, 2, 2)  # ConvViT patch merges: strides 4, 8, 16
VIT_PATCH = 16
CONV_LN_EPS = 1e-5  # ConvMAE's patch-merge and convolutional-block LayerNorms use the torch default
POSITION_TEMPERATURE = 10000.0


def sincos_position_table(height: int, width: int, dim: int, device: Optional[torch.device] = None) -> Tensor:
    """The fixed 2-D sine-cosine position table of MAE / ConvMAE, for any grid.

    Returns (height * width, dim) fp32 in row-major token order. With q = dim / 4 frequencies
    omega_k = T^(-k / q) (T = 10000), the channels are [sin(x omega), cos(x omega), sin(y omega),
    cos(y omega)] for the integer column x and row y of each token.
    """
    quarter = dim // 4
    omega = POSITION_TEMPERATURE ** (-torch.arange(quarter, dtype=torch.float64, device=device) / quarter)
    rows, cols = torch.meshgrid(
        torch.arange(height, dtype=torch.float64, device=device),
        torch.arange(width, dtype=torch.float64, device=device),
        indexing="ij",
    )
    x_angles = cols.reshape(-1, 1) * omega
    y_angles = rows.reshape(-1, 1) * omega
    table = torch.cat([x_angles.sin(), x_angles.cos(), y_angles.sin(), y_angles.cos()], dim=1)
    return table.float()


class PatchMerge(nn.Module):
    """Non-overlapping patch convolution (``proj``, kernel = stride = patch) -> channel LayerNorm -> GELU."""

    def __init__(self, in_dim: int, out_dim: int, patch: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_dim, out_dim, kernel_size=patch, stride=patch)
        self.norm = nn.LayerNorm(out_dim, eps=CONV_LN_EPS)
        self.act = nn.GELU()

    def forward(self, x: Tensor) -> Tensor:
        """x: (B, C_in, H, W) -> (B, C_out, H / patch, W / patch)."""
        x = self.proj(x)
        return self.act(self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2))


class ConvMLP(nn.Module):
    """Per-pixel MLP as 1x1 convolutions: fc1 (C -> hidden) -> GELU -> fc2 (hidden -> C)."""

    def __init__(self, dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(dim, hidden_dim, 1)
        self.act = nn.GELU()
        self.fc2 = nn.Conv2d(hidden_dim, dim, 1)

    def forward(self, x: Tensor) -> Tensor:
        """x: (B, C, H, W) -> (B, C, H, W)."""
        return self.fc2(self.act(self.fc1(x)))


class ConvBlock(nn.Module):
    """ConvMAE's convolutional block: a transformer block with a 5x5 depthwise convolution as the
    token mixer. x += pointwise_out(depthwise(pointwise_in(LN(x)))); x += mlp(LN(x))."""

    def __init__(self, dim: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=CONV_LN_EPS)
        self.pointwise_in = nn.Conv2d(dim, dim, 1)
        self.depthwise = nn.Conv2d(dim, dim, 5, padding=2, groups=dim)
        self.pointwise_out = nn.Conv2d(dim, dim, 1)
        self.norm2 = nn.LayerNorm(dim, eps=CONV_LN_EPS)
        self.mlp = ConvMLP(dim, int(dim * mlp_ratio))

    @staticmethod
    def _channel_norm(norm: nn.LayerNorm, x: Tensor) -> Tensor:
        return norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)

    def forward(self, x: Tensor) -> Tensor:
        """x: (B, C, H, W) -> (B, C, H, W)."""
        x = x + self.pointwise_out(self.depthwise(self.pointwise_in(self._channel_norm(self.norm1, x))))
        return x + self.mlp(self._channel_norm(self.norm2, x))


@dataclass
class StemOutput:
    """A frame after the backbone's per-frame part (everything before the first transformer block)."""

    tokens: Tensor  # (B, L, C): stage-3 input tokens X, position table added; L = h * w
    grid: tuple[int, int]  # (h, w) = (H / 16, W / 16)
    f8: Optional[Tensor]  # (B, C8, H/8, W/8) ConvViT stage 2, None for the plain ViT
    f4: Optional[Tensor]  # (B, C4, H/4, W/4) ConvViT stage 1, None for the plain ViT


def _add_position_table(tokens: Tensor, height: int, width: int, scale: float) -> Tensor:
    """tokens (B, height * width, C), row-major -> tokens + scale * the sin-cos table of that grid."""
    table = sincos_position_table(height, width, tokens.shape[-1], tokens.device).to(tokens.dtype)
    return tokens + scale * table


def _init_transformer_weights(module: nn.Module) -> None:
    """Linear layers: Xavier-uniform, zero bias; LayerNorms: ones and zeros (MAE's pre-training init)."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def _check_stride(image: Tensor, owner: str) -> None:
    if image.dim() != 4 or image.shape[-2] % VIT_PATCH or image.shape[-1] % VIT_PATCH:
        raise ValueError(f"{owner}: expected (B, 3, H, W) with H, W multiples of 16, got {tuple(image.shape)}")


class ConvViT(nn.Module):
    """ConvViT-B: ``patch_embed1`` (4x4) -> ``blocks1`` -> ``patch_embed2`` (2x2) -> ``blocks2`` ->
    ``patch_embed3`` (2x2) -> ``patch_embed4`` (Linear) + sin-cos table -> ``blocks`` -> ``norm``.

    ``position_scale`` multiplies the fixed table (1: ConvMAE; see ``STMABackboneConfig``)."""

    def __init__(
        self,
        widths: Sequence[int],
        depths: Sequence[int],
        num_heads: int,
        mlp_ratio: float = 4.0,
        position_scale: float = 1.0,
    ) -> None:
        super().__init__()
        w4, w8, w16 = widths
        self.embed_dim = w16
        self.position_scale = position_scale
        self.patch_embed1 = PatchMerge(3, w4, CONV_STAGE_PATCHES[0])
        self.blocks1 = nn.ModuleList(ConvBlock(w4, mlp_ratio) for _ in range(depths[0]))
        self.patch_embed2 = PatchMerge(w4, w8, CONV_STAGE_PATCHES[1])
        self.blocks2 = nn.ModuleList(ConvBlock(w8, mlp_ratio) for _ in range(depths[1]))
        self.patch_embed3 = PatchMerge(w8, w16, CONV_STAGE_PATCHES[2])
        self.patch_embed4 = nn.Linear(w16, w16)
        self.blocks = nn.ModuleList(AssociationBlock(w16, num_heads, mlp_ratio) for _ in range(depths[2]))
        self.norm = nn.LayerNorm(w16, eps=TRANSFORMER_LN_EPS)
        self.skip_channels = (w8, w4)  # channels of f8, f4
        _init_transformer_weights(self)

    def stem(self, image: Tensor) -> StemOutput:
        """image: (B, 3, H, W) ImageNet-normalised, H and W multiples of 16 -> tokens X and f8, f4."""
        _check_stride(image, type(self).__name__)
        f4 = self.patch_embed1(image)
        for block in self.blocks1:
            f4 = block(f4)
        f8 = self.patch_embed2(f4)
        for block in self.blocks2:
            f8 = block(f8)
        x = self.patch_embed3(f8)
        h, w = x.shape[-2:]
        tokens = self.patch_embed4(x.flatten(2).transpose(1, 2))
        return StemOutput(tokens=_add_position_table(tokens, h, w, self.position_scale), grid=(h, w), f8=f8, f4=f4)

    def forward(self, image: Tensor) -> StemOutput:
        """The per-frame part, :meth:`stem` (the transformer ``blocks`` run inside STML)."""
        return self.stem(image)


class PatchEmbed(nn.Module):
    """ViT patch embedding: ``proj`` (16x16 convolution, stride 16)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, dim, kernel_size=VIT_PATCH, stride=VIT_PATCH)

    def forward(self, image: Tensor) -> Tensor:
        """image: (B, 3, H, W) -> (B, C, H/16, W/16)."""
        return self.proj(image)


class PlainViT(nn.Module):
    """ViT-B/16 without a class token: ``patch_embed`` + sin-cos table (times ``position_scale``, 1 in
    MAE) -> ``blocks`` -> ``norm``."""

    def __init__(
        self, width: int, depth: int, num_heads: int, mlp_ratio: float = 4.0, position_scale: float = 1.0
    ) -> None:
        super().__init__()
        self.embed_dim = width
        self.position_scale = position_scale
        self.patch_embed = PatchEmbed(width)
        self.blocks = nn.ModuleList(AssociationBlock(width, num_heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(width, eps=TRANSFORMER_LN_EPS)
        self.skip_channels = (width // 2, width // 4)  # channels of the pyramid's f8, f4
        _init_transformer_weights(self)

    def stem(self, image: Tensor) -> StemOutput:
        """image: (B, 3, H, W) ImageNet-normalised, H and W multiples of 16 -> tokens X (no f8, f4)."""
        _check_stride(image, type(self).__name__)
        x = self.patch_embed(image)
        h, w = x.shape[-2:]
        tokens = x.flatten(2).transpose(1, 2)
        return StemOutput(tokens=_add_position_table(tokens, h, w, self.position_scale), grid=(h, w), f8=None, f4=None)

    def forward(self, image: Tensor) -> StemOutput:
        """The per-frame part, :meth:`stem` (the transformer ``blocks`` run inside STML)."""
        return self.stem(image)


class TransposedConvPyramid(nn.Module):
    """The plain ViT's stride-8 and stride-4 maps from its stride-16 output, as ViTDet's simple pyramid:
    stride 8 = ConvTranspose(C -> C/2, x2); stride 4 = ConvTranspose(C -> C/2, x2) -> LN -> GELU ->
    ConvTranspose(C/2 -> C/4, x2)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.upsample_s8 = nn.ConvTranspose2d(dim, dim // 2, kernel_size=2, stride=2)
        self.upsample_s4 = nn.Sequential(
            nn.ConvTranspose2d(dim, dim // 2, kernel_size=2, stride=2),
            ChannelLayerNorm(dim // 2),
            nn.GELU(),
            nn.ConvTranspose2d(dim // 2, dim // 4, kernel_size=2, stride=2),
        )

    def forward(self, f16: Tensor) -> tuple[Tensor, Tensor]:
        """f16: (B, C, h, w) -> f8 (B, C/2, 2h, 2w), f4 (B, C/4, 4h, 4w)."""
        return self.upsample_s8(f16), self.upsample_s4(f16)
