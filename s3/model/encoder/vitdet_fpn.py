"""The "+ViT" ablation encoder: a ViTDet-style simple feature pyramid on the frozen ViT's last map."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch.nn as nn
from torch import Tensor

from s3.model.encoder.s3_encoder import check_input_size, init_adapter_weights

if TYPE_CHECKING:
    from s3.model.backbone.vit import FrozenViT


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channel axis of a (B, C, H, W) map."""

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(channels, eps=eps)

    def forward(self, x: Tensor) -> Tensor:
        """x: (B, C, H, W) -> (B, C, H, W)."""
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def _output_head(in_channels: int, out_dim: int) -> nn.Sequential:
    """1x1 conv -> LN -> 3x3 conv -> LN, as ViTDet's lateral and output convs."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_dim, 1, bias=False),
        ChannelLayerNorm(out_dim),
        nn.Conv2d(out_dim, out_dim, 3, padding=1, bias=False),
        ChannelLayerNorm(out_dim),
    )


class ViTDetFPNEncoder(nn.Module):
    """Frozen ViT (all blocks, final LayerNorm) -> stride-16 patch map -> three pyramid levels.

    stride 16: the map itself; stride 8: ConvTranspose(C -> C/2, x2);
    stride 4: ConvTranspose(C -> C/2, x2) -> LN -> GELU -> ConvTranspose(C/2 -> C/4, x2);
    each level then gets its own 1x1 conv -> LN -> 3x3 conv -> LN to ``out_dim`` channels.
    """

    def __init__(self, vit: FrozenViT, out_dim: int = 256) -> None:
        super().__init__()
        dim = vit.embed_dim
        self.vit = vit
        self.upsample_s8 = nn.ConvTranspose2d(dim, dim // 2, kernel_size=2, stride=2)
        self.upsample_s4 = nn.Sequential(
            nn.ConvTranspose2d(dim, dim // 2, kernel_size=2, stride=2),
            ChannelLayerNorm(dim // 2),
            nn.GELU(),
            nn.ConvTranspose2d(dim // 2, dim // 4, kernel_size=2, stride=2),
        )
        self.head_s16 = _output_head(dim, out_dim)
        self.head_s8 = _output_head(dim // 2, out_dim)
        self.head_s4 = _output_head(dim // 4, out_dim)
        self.out_channels = (out_dim, out_dim, out_dim)  # strides 16, 8, 4
        for name, child in self.named_children():
            if name != "vit":
                init_adapter_weights(child)

    def forward(self, image: Tensor) -> list[Tensor]:
        """image: (B, 3, H, W) ImageNet-normalised, H and W multiples of 32.

        Returns [f16 (B, D, H/16, W/16), f8 (B, D, H/8, W/8), f4 (B, D, H/4, W/4)], D = out_dim.
        """
        check_input_size(image, type(self).__name__)
        batch = image.shape[0]
        grid = (image.shape[-2] // self.vit.patch_size, image.shape[-1] // self.vit.patch_size)
        patch_tokens = self.vit(image)[:, 1:]  # all blocks + final LayerNorm, without autograd
        patch_map = patch_tokens.transpose(1, 2).reshape(batch, -1, *grid)
        return [
            self.head_s16(patch_map),
            self.head_s8(self.upsample_s8(patch_map)),
            self.head_s4(self.upsample_s4(patch_map)),
        ]
