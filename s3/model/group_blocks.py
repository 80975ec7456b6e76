"""Convolution blocks on object groups, shared by the mask encoder, pixel fuser, decoder and query transformer.

Object-wise ("group") tensors have the layout ``(B, N, C, h, w)``: one slice per object. Group
layers fold ``B*N`` into the batch axis, run an ordinary layer and unfold again.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor


class GroupConv2d(nn.Conv2d):
    """A Conv2d over object groups: (B, N, C, h, w) -> (B, N, C', h', w')."""

    def forward(self, g: Tensor) -> Tensor:  # type: ignore[override]
        b, n = g.shape[:2]
        out = super().forward(g.flatten(0, 1))
        return out.view(b, n, *out.shape[1:])


def eca_kernel_size(channels: int, gamma: int = 2, b: int = 1) -> int:
    """Odd 1-D kernel size of efficient channel attention for ``channels`` channels (5 for 128/256)."""
    t = int((abs(math.log2(channels)) + b) / gamma)
    return t if t % 2 else t + 1


class CAResBlock(nn.Module):
    """Residual block with efficient channel attention, on plain (B, C, h, w) maps.

    y = conv2(relu(conv1(relu(x)))); gate = sigmoid(conv1d(mean_hw(y))) over the channel axis;
    out = y * gate + skip(x).
    """

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_dim, out_dim, 3, padding=1)
        self.conv2 = nn.Conv2d(out_dim, out_dim, 3, padding=1)
        k = eca_kernel_size(out_dim)
        self.channel_gate = nn.Conv1d(1, 1, k, padding=(k - 1) // 2, bias=False)
        self.skip = nn.Identity() if in_dim == out_dim else nn.Conv2d(in_dim, out_dim, 1)

    def forward(self, x: Tensor) -> Tensor:
        """x: (B, C_in, h, w) -> (B, C_out, h, w)."""
        y = self.conv2(F.relu(self.conv1(F.relu(x))))
        gate = self.channel_gate(y.mean(dim=(2, 3)).unsqueeze(1))  # (B, 1, C)
        gate = torch.sigmoid(gate).transpose(1, 2).unsqueeze(-1)  # (B, C, 1, 1)
        return y * gate + self.skip(x)


class GroupResBlock(nn.Module):
    """Pre-activation residual block on object groups: (B, N, C_in, h, w) -> (B, N, C_out, h, w)."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.conv1 = GroupConv2d(in_dim, out_dim, 3, padding=1)
        self.conv2 = GroupConv2d(out_dim, out_dim, 3, padding=1)
        self.skip = nn.Identity() if in_dim == out_dim else GroupConv2d(in_dim, out_dim, 1)

    def forward(self, g: Tensor) -> Tensor:
        """g: (B, N, C_in, h, w) -> (B, N, C_out, h, w)."""
        return self.conv2(F.relu(self.conv1(F.relu(g)))) + self.skip(g)


class MainToGroupDistributor(nn.Module):
    """Adds a projected shared map to every object's projected group map."""

    def __init__(self, x_dim: int, g_dim: int, out_dim: int) -> None:
        super().__init__()
        self.x_transform = nn.Conv2d(x_dim, out_dim, 1)
        self.g_transform = GroupConv2d(g_dim, out_dim, 1)

    def forward(self, x: Tensor, g: Tensor) -> Tensor:
        """x: (B, C_x, h, w) shared; g: (B, N, C_g, h, w) -> (B, N, C_out, h, w)."""
        return self.x_transform(x).unsqueeze(1) + self.g_transform(g)


class GroupFeatureFusionBlock(nn.Module):
    """Fuses a shared feature map into object groups, then two CAResBlocks per object."""

    def __init__(self, x_dim: int, g_dim: int, out_dim: int) -> None:
        super().__init__()
        self.distributor = MainToGroupDistributor(x_dim, g_dim, out_dim)
        self.block1 = CAResBlock(out_dim, out_dim)
        self.block2 = CAResBlock(out_dim, out_dim)

    def forward(self, x: Tensor, g: Tensor) -> Tensor:
        """x: (B, C_x, h, w); g: (B, N, C_g, h, w) -> (B, N, C_out, h, w)."""
        b, n = g.shape[:2]
        fused = self.distributor(x, g).flatten(0, 1)
        fused = self.block2(self.block1(fused))
        return fused.view(b, n, *fused.shape[1:])
