"""Sensory memory updates: a convolutional GRU-style gate on the per-object sensory state.

Both updaters concatenate their input features with the sensory state, run one grouped 3x3 conv
(``transform``, Xavier-normal weight) to 3*S gate channels and apply :func:`sensory_gru_gate`; the
transform and the gate run in fp32 with autocast disabled.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from s3.model.group_blocks import GroupConv2d


def sensory_gru_gate(sensory: Tensor, gates: Tensor) -> Tensor:
    """GRU-style update h' = f * h * (1 - u) + u * c.

    sensory h: (B, N, S, h, w); gates: (B, N, 3S, h, w), split along channels into the forget gate
    f = sigmoid(gates[:S]), the update gate u = sigmoid(gates[S:2S]) and the candidate
    c = tanh(gates[2S:]). Returns (B, N, S, h, w).
    """
    forget_logits, update_logits, candidate = gates.chunk(3, dim=2)
    update = torch.sigmoid(update_logits)
    return torch.sigmoid(forget_logits) * sensory * (1 - update) + update * torch.tanh(candidate)


def _make_gate_transform(in_dim: int, sensory_dim: int) -> GroupConv2d:
    transform = GroupConv2d(in_dim + sensory_dim, 3 * sensory_dim, 3, padding=1)
    nn.init.xavier_normal_(transform.weight)
    return transform


def _gated_update(transform: GroupConv2d, features: Tensor, sensory: Tensor) -> Tensor:
    """fp32: gates = transform([features, sensory]) -> sensory_gru_gate(sensory, gates)."""
    with torch.autocast(sensory.device.type, enabled=False):
        sensory = sensory.float()
        gates = transform(torch.cat([features.float(), sensory], dim=2))
        return sensory_gru_gate(sensory, gates)


def _area_resize_groups(g: Tensor, size: tuple[int, int]) -> Tensor:
    """Area-interpolate a group tensor (B, N, C, H, W) to (B, N, C, *size)."""
    b, n = g.shape[:2]
    out = F.interpolate(g.flatten(0, 1), size=size, mode="area")
    return out.view(b, n, *out.shape[1:])


class SensoryDeepUpdater(nn.Module):
    """Sensory update from a mask value (used by the mask encoder)."""

    def __init__(self, value_dim: int, sensory_dim: int) -> None:
        super().__init__()
        self.transform = _make_gate_transform(value_dim, sensory_dim)

    def forward(self, value: Tensor, sensory: Tensor) -> Tensor:
        """value: (B, N, CV, h, w); sensory: (B, N, S, h, w) -> new sensory (B, N, S, h, w), fp32."""
        return _gated_update(self.transform, value, sensory)


class SensoryUpdater(nn.Module):
    """Sensory update from the decoder's stride-16, stride-8 and stride-4 group maps.

    Each map goes through its own grouped 1x1 conv (``g16_conv``, ``g8_conv``, ``g4_conv``) to
    ``mid_dim`` channels after area-downsampling to the sensory resolution; the three are summed.
    """

    def __init__(self, in_dims: Sequence[int] = (256, 128, 129), mid_dim: int = 256, sensory_dim: int = 256) -> None:
        super().__init__()
        if len(in_dims) != 3:
            raise ValueError(f"SensoryUpdater: in_dims needs 3 entries (strides 16, 8, 4), got {list(in_dims)}")
        self.g16_conv = GroupConv2d(in_dims[0], mid_dim, 1)
        self.g8_conv = GroupConv2d(in_dims[1], mid_dim, 1)
        self.g4_conv = GroupConv2d(in_dims[2], mid_dim, 1)
        self.transform = _make_gate_transform(mid_dim, sensory_dim)

    def forward(self, g16: Tensor, g8: Tensor, g4: Tensor, sensory: Tensor) -> Tensor:
        """g16: (B, N, C16, h, w); g8: (B, N, C8, 2h, 2w); g4: (B, N, C4, 4h, 4w);
        sensory: (B, N, S, h, w) -> new sensory (B, N, S, h, w), fp32.
        """
        size = sensory.shape[-2:]
        features = (
            self.g16_conv(g16)
            + self.g8_conv(_area_resize_groups(g8, size))
            + self.g4_conv(_area_resize_groups(g4, size))
        )
        return _gated_update(self.transform, features, sensory)
