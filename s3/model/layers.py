"""Small building blocks shared by the memory, query and decoder modules.

Object-wise ("group") tensors have the layout ``(B, N, C, h, w)``: one slice per object. Group
layers fold ``B*N`` into the batch axis, run an ordinary layer and unfold again.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

Pads = tuple[int, int, int, int]  # (left, right, top, bottom), as F.pad takes them


def pad_to_multiple(image: Tensor, multiple: int) -> tuple[Tensor, Pads]:
    """Zero-pad the last two axes, centred, to the next multiple of ``multiple``.

    image: (..., H, W) -> (..., H', W') with H', W' multiples of ``multiple``; also returns the pads.
    """
    if multiple < 1:
        raise ValueError(f"pad_to_multiple: multiple must be >= 1, got {multiple}")
    h, w = image.shape[-2:]
    if h < 1 or w < 1:
        raise ValueError(f"pad_to_multiple: cannot pad an empty image of size {h}x{w}")
    new_h = math.ceil(h / multiple) * multiple
    new_w = math.ceil(w / multiple) * multiple
    top, left = (new_h - h) // 2, (new_w - w) // 2
    pads = (left, new_w - w - left, top, new_h - h - top)
    if new_h == h and new_w == w:
        return image, pads
    return F.pad(image, pads), pads


def unpad(x: Tensor, pads: Pads) -> Tensor:
    """Undo :func:`pad_to_multiple` on the last two axes (same resolution as the padded input)."""
    left, right, top, bottom = pads
    h, w = x.shape[-2:]
    return x[..., top : h - bottom, left : w - right]


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


def soft_aggregate(prob: Tensor, dim: int = 1) -> Tensor:
    """Soft aggregation of per-object probabilities into logits with a background channel.

    prob: (B, N, ...) in [0, 1] -> logits (B, N+1, ...), background first; computed in fp32.
    """
    prob = prob.float()
    background = torch.prod(1 - prob, dim=dim, keepdim=True)
    stacked = torch.cat([background, prob], dim=dim).clamp(1e-7, 1 - 1e-7)
    return torch.log(stacked / (1 - stacked))


def others_mask(masks: Tensor) -> Tensor:
    """For each object, the union of all other objects: (B, N, ...) -> (B, N, ...)."""
    return (masks.sum(dim=1, keepdim=True) - masks).clamp(0, 1)


class SinCosPositionalEncoding2D(nn.Module):
    """2-D sine-cosine positional encoding.

    Channels [0, D/2) encode x, [D/2, D) encode y, each as interleaved (sin, cos) pairs;
    positions are normalised to [0, scale]. ``inv_freq`` is a persistent buffer (it is part of
    the reference state dict).
    """

    def __init__(self, dim: int, scale: float = 32.0, temperature: float = 128.0) -> None:
        super().__init__()
        self.dim = dim
        self.scale = scale
        half = int(math.ceil(dim / 4) * 2)
        self.half = half
        inv_freq = 1.0 / (temperature ** (torch.arange(0, half, 2).float() / half))
        self.register_buffer("inv_freq", inv_freq)

    def forward(self, h: int, w: int, device: torch.device | None = None) -> Tensor:
        """Return the encoding of an h x w grid: (h, w, dim), fp32."""
        device = device if device is not None else self.inv_freq.device
        eps = 1e-6
        py = torch.arange(h, device=device, dtype=torch.float32) / (h - 1 + eps) * self.scale
        px = torch.arange(w, device=device, dtype=torch.float32) / (w - 1 + eps) * self.scale
        ang_y = py[:, None] * self.inv_freq[None, :]  # (h, half/2)
        ang_x = px[:, None] * self.inv_freq[None, :]  # (w, half/2)
        enc_y = torch.stack([ang_y.sin(), ang_y.cos()], dim=-1).flatten(1)  # (h, half)
        enc_x = torch.stack([ang_x.sin(), ang_x.cos()], dim=-1).flatten(1)  # (w, half)
        pe = torch.cat(
            [enc_x[None, :, :].expand(h, w, self.half), enc_y[:, None, :].expand(h, w, self.half)],
            dim=-1,
        )
        return pe[..., : self.dim]
