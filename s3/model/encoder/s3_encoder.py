"""The spatial-semantic pixel encoder: frozen ViT + trainable CNN prior + interaction blocks."""

from __future__ import annotations

from typing import TYPE_CHECKING

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from s3.model.encoder.deformable_attention import MultiScaleDeformableAttention, grid_reference_points
from s3.model.encoder.spatial_prior import SpatialPriorModule
from s3.model.encoder.spatial_semantic_block import SpatialSemanticBlock
from s3.model.precision import compute_dtype

if TYPE_CHECKING:
    from s3.model.backbone.vit import FrozenViT

INPUT_MULTIPLE = 32


def check_input_size(image: Tensor, owner: str) -> None:
    """Raise a ValueError unless the image's H and W are multiples of 32."""
    height, width = image.shape[-2:]
    if height % INPUT_MULTIPLE or width % INPUT_MULTIPLE:
        raise ValueError(
            f"{owner}: input HxW={height}x{width} must be a multiple of {INPUT_MULTIPLE}; "
            "pad it first (s3.model.padding.pad_to_multiple)"
        )


def token_map(tokens: Tensor, size: tuple[int, int]) -> Tensor:
    """Row-major tokens (B, h*w, C) as a feature map (B, C, h, w): a channels-last view, no copy."""
    return tokens.unflatten(1, size).permute(0, 3, 1, 2)


def init_adapter_weights(module: nn.Module) -> None:
    """The adapter's generic initialisation, applied to every submodule of ``module``.

    Linear: truncated normal (std 0.02), bias 0; LayerNorm / BatchNorm: weight 1, bias 0;
    Conv2d / ConvTranspose2d: normal(0, sqrt(2 / fan_out)) with fan_out = k*k*out/groups, bias 0.
    """
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.LayerNorm, nn.BatchNorm2d)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
            nn.init.normal_(m.weight, std=math.sqrt(2.0 / fan_out))
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class S3Encoder(nn.Module):
    """S3's spatial-semantic pixel encoder (paper section 3.2).

    The frozen ViT runs in ``num_blocks`` equal block groups; after each group a spatial-semantic
    block updates the CNN tokens (stride 8 and 16, from the spatial prior module) using the group's
    CLS and patch tokens. The last block has ``extra_units_last_block`` extra extractor units. The
    pyramid is then: stride 4 = up(c2) + prior c1, stride 8 = c2, stride 16 = c3, optionally plus the
    bilinearly resized patch-token maps of ViT groups 0, 1, 2, each followed by a BatchNorm.

    Switches for the paper's ablations: ``semantic`` / ``spatial`` drop the semantic cross-attention
    or the extractor units; ``add_vit_features`` drops the ViT-map addition.
    """

    def __init__(
        self,
        vit: FrozenViT,
        prior_width: int = 64,
        num_blocks: int = 4,
        deform_heads: int = 12,
        deform_points: int = 4,
        ffn_ratio: float = 0.25,
        extra_units_last_block: int = 2,
        semantic: bool = True,
        spatial: bool = True,
        add_vit_features: bool = True,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        if add_vit_features and num_blocks < 3:
            raise ValueError(f"S3Encoder: add_vit_features needs at least 3 blocks, got num_blocks={num_blocks}")
        dim = vit.embed_dim
        self.vit = vit
        self.block_groups = vit.group_bounds(num_blocks)
        self.add_vit_features = add_vit_features
        self.spatial_prior = SpatialPriorModule(3, prior_width, dim)
        self.level_embed = nn.Parameter(torch.empty(2, dim))  # rows: stride 8, stride 16
        self.blocks = nn.ModuleList(
            [
                SpatialSemanticBlock(
                    dim,
                    deform_heads,
                    deform_points,
                    num_units=1 + (extra_units_last_block if i == num_blocks - 1 else 0),
                    semantic=semantic,
                    spatial=spatial,
                    ffn_ratio=ffn_ratio,
                    drop_path=drop_path,
                )
                for i in range(num_blocks)
            ]
        )
        self.up = nn.ConvTranspose2d(dim, dim, kernel_size=2, stride=2)
        self.norm_s4 = nn.BatchNorm2d(dim)
        self.norm_s8 = nn.BatchNorm2d(dim)
        self.norm_s16 = nn.BatchNorm2d(dim)
        self.out_channels = (dim, dim, dim)  # strides 16, 8, 4
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The reference initialisation: truncated-normal Linear / fan-out Conv / unit norm init of the
        adapter, then Deformable-DETR's init of every deformable attention (offsets on a ring)."""
        for name, child in self.named_children():
            if name != "vit":
                init_adapter_weights(child)
        nn.init.normal_(self.level_embed)
        for m in self.modules():
            if isinstance(m, MultiScaleDeformableAttention):
                m.reset_parameters()

    def forward(self, image: Tensor) -> list[Tensor]:
        """image: (B, 3, H, W) ImageNet-normalised, H and W multiples of 32.

        Returns [f16 (B, C, H/16, W/16), f8 (B, C, H/8, W/8), f4 (B, C, H/4, W/4)].
        """
        check_input_size(image, type(self).__name__)
        batch = image.shape[0]
        height, width = image.shape[-2:]
        size8 = (height // 8, width // 8)
        size16 = (height // self.vit.patch_size, width // self.vit.patch_size)
        count8 = size8[0] * size8[1]

        # Under autocast the CNN token stream and the pyramid stay in the compute dtype (bf16/fp16):
        # every layer they feed computes in it anyway, and converting 8100 x 768 tokens back and forth
        # around each of the ~50 residual steps costs more than the steps themselves.
        dtype = compute_dtype(image)
        c1, c2, c3 = self.spatial_prior(image)
        level_embed = self.level_embed.to(dtype)
        cnn_tokens = torch.cat([c2.to(dtype) + level_embed[0], c3.to(dtype) + level_embed[1]], dim=1)
        reference_points = grid_reference_points([size8, size16], 1, image.device)
        spatial_shapes = torch.tensor([size16], dtype=torch.long, device=image.device)
        level_start_index = torch.zeros(1, dtype=torch.long, device=image.device)

        vit_tokens = self.vit.prepare_tokens(image)
        vit_maps = []
        for block, (start, end) in zip(self.blocks, self.block_groups):
            vit_tokens = self.vit.forward_blocks(vit_tokens, start, end)
            cls_token, patch_tokens = vit_tokens[:, :1], vit_tokens[:, 1:]
            cnn_tokens = block(
                cnn_tokens, patch_tokens, cls_token, reference_points, spatial_shapes, level_start_index, size8, size16
            )
            if self.add_vit_features and len(vit_maps) < 3:
                vit_maps.append(token_map(patch_tokens.to(dtype), size16))

        c2, c3 = cnn_tokens.split([count8, cnn_tokens.shape[1] - count8], dim=1)
        c2, c3 = token_map(c2, size8), token_map(c3, size16)
        c1 = self.up(c2) + c1.to(dtype)
        if self.add_vit_features:
            c1 = c1 + F.interpolate(vit_maps[0], size=c1.shape[-2:], mode="bilinear", align_corners=False)
            c2 = c2 + F.interpolate(vit_maps[1], size=size8, mode="bilinear", align_corners=False)
            c3 = c3 + vit_maps[2]
        return [self.norm_s16(c3), self.norm_s8(c2), self.norm_s4(c1)]
