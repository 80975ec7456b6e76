"""Spatial prior module: a small trainable CNN giving stride-4/8/16 features."""

from __future__ import annotations

import torch.nn as nn
from torch import Tensor


def _conv_bn_relu(in_channels: int, out_channels: int, stride: int) -> list[nn.Module]:
    return [
        nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    ]


class SpatialPriorModule(nn.Module):
    """Stem (3 conv-BN-ReLU + max-pool, stride 4) -> conv2 (stride 8) -> conv3 (stride 16),
    widths ``width``, 2*width, 4*width; 1x1 convs ``fc1/fc2/fc3`` lift each to ``out_dim``.
    """

    def __init__(self, in_channels: int = 3, width: int = 64, out_dim: int = 768) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            *_conv_bn_relu(in_channels, width, stride=2),
            *_conv_bn_relu(width, width, stride=1),
            *_conv_bn_relu(width, width, stride=1),
            nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
        )
        self.conv2 = nn.Sequential(*_conv_bn_relu(width, 2 * width, stride=2))
        self.conv3 = nn.Sequential(*_conv_bn_relu(2 * width, 4 * width, stride=2))
        self.fc1 = nn.Conv2d(width, out_dim, 1)
        self.fc2 = nn.Conv2d(2 * width, out_dim, 1)
        self.fc3 = nn.Conv2d(4 * width, out_dim, 1)

    def forward(self, image: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """image: (B, 3, H, W) -> c1 map (B, C, H/4, W/4), c2 tokens (B, H/8*W/8, C),
        c3 tokens (B, H/16*W/16, C), tokens row-major.
        """
        s4 = self.stem(image)
        s8 = self.conv2(s4)
        s16 = self.conv3(s8)
        c1 = self.fc1(s4)
        c2 = self.fc2(s8).flatten(2).transpose(1, 2)
        c3 = self.fc3(s16).flatten(2).transpose(1, 2)
        return c1, c2, c3
