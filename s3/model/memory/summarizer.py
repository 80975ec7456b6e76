"""Object summarizer: compresses a mask value into a few weighted-average object-memory entries."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from s3.model.positional_encoding import SinCosPositionalEncoding2D


def _mlp(in_dim: int, hidden_dim: int, out_dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.ReLU(inplace=True), nn.Linear(hidden_dim, out_dim))


class ObjectSummarizer(nn.Module):
    """Per object, ``num_summaries`` soft-weighted sums of projected value features plus their areas.

    The first half of the summaries may only pool from the object (weights times the mask), the
    second half only from the rest of the frame (weights times 1 - mask). ``input_proj`` maps the
    value to ``embed_dim`` and ``pos_enc`` (with ``add_pe``) adds a 2-D sin-cos encoding; the MLPs
    ``feature_pred`` / ``weights_pred`` and the pooling run in fp32 with autocast disabled.
    """

    def __init__(self, value_dim: int, embed_dim: int, num_summaries: int, add_pe: bool = True) -> None:
        super().__init__()
        if num_summaries < 2 or num_summaries % 2:
            raise ValueError(f"ObjectSummarizer: num_summaries must be even and >= 2, got {num_summaries}")
        self.num_summaries = num_summaries
        self.input_proj = nn.Linear(value_dim, embed_dim)
        self.pos_enc = SinCosPositionalEncoding2D(embed_dim) if add_pe else None
        self.feature_pred = _mlp(embed_dim, embed_dim, embed_dim)
        self.weights_pred = _mlp(embed_dim, embed_dim, num_summaries)

    def forward(
        self, masks: Tensor, value: Tensor, need_weight_logits: bool = False
    ) -> tuple[Tensor, Tensor | None]:
        """masks: (B, N, H, W) soft masks; value: (B, N, CV, h, w) -> summaries (B, N, Q, C+1)
        (Q = num_summaries; per summary the weighted feature sum (C = embed_dim), then the total
        weight, i.e. its area) and, if requested, the weight logits (B, N, h, w, Q).
        """
        h, w = value.shape[-2:]
        masks = F.interpolate(masks, size=(h, w), mode="area").unsqueeze(-1)  # (B, N, h, w, 1)
        half = self.num_summaries // 2
        allowed = torch.cat([masks.expand(-1, -1, -1, -1, half), (1 - masks).expand(-1, -1, -1, -1, half)], dim=-1)

        features = self.input_proj(value.permute(0, 1, 3, 4, 2))  # (B, N, h, w, C)
        if self.pos_enc is not None:
            features = features + self.pos_enc(h, w, device=value.device)
        with torch.autocast(value.device.type, enabled=False):
            features = features.float()
            logits = self.weights_pred(features)  # (B, N, h, w, Q)
            weights = torch.sigmoid(logits) * allowed.float()
            sums = torch.einsum("bnhwq,bnhwc->bnqc", weights, self.feature_pred(features))
            areas = weights.sum(dim=(2, 3)).unsqueeze(-1)  # (B, N, Q, 1)
        summaries = torch.cat([sums, areas], dim=-1)
        return summaries, (logits if need_weight_logits else None)
