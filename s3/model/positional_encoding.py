"""The fixed 2-D sine-cosine positional encoding of the object summarizer and the query transformer."""

from __future__ import annotations

import math

import torch
import torch.nn as nn
from torch import Tensor


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
