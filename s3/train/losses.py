"""Training losses: point-sampled cross-entropy and dice with uncertainty-based point selection.

All logits here are soft-aggregated class logits with the background first: (..., K+1, H, W) for
K objects. Per clip, frames are handled as a batch of F = T-1 maps. Points are normalised (x, y)
coordinates in [0, 1]^2, so one set of points addresses a full-resolution map and a stride-16
auxiliary map alike (bilinear sampling, ``align_corners=False``, zero padding: within half a pixel
of the border, values blend towards 0, as in the reference).

Per frame, ``num_points * oversample_ratio`` uniform candidates are scored by the gap between the
two largest class logits (small gap = uncertain); the ``importance_sample_ratio`` share of
``num_points`` with the smallest gap is kept and the rest is filled with fresh uniform points.
At those points: cross-entropy against the bilinearly sampled one-hot target (soft labels),
averaged over points and summed over frames; dice on the softmax probabilities of the objects
(background excluded), ``1 - (2 sum(p g) + 1) / (sum p + sum g + 1)`` over points, summed over
frames and averaged over objects. Each clip's terms are divided by the batch size and summed.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from s3.config.train import LossConfig


def sample_points(maps: Tensor, coords: Tensor) -> Tensor:
    """Bilinear values of ``maps`` (F, C, H, W) at ``coords`` (F, P, 2) in [0, 1]^2 -> (F, C, P)."""
    grid = 2.0 * coords.unsqueeze(2) - 1.0  # (F, P, 1, 2) in grid_sample's [-1, 1]
    return F.grid_sample(maps, grid.to(maps.dtype), mode="bilinear", align_corners=False).squeeze(3)


def logit_uncertainty(point_logits: Tensor) -> Tensor:
    """(F, C, P) class logits, C >= 2 -> (F, P): second-largest minus largest logit (0 = most uncertain)."""
    top2 = point_logits.topk(2, dim=1).values
    return top2[:, 1] - top2[:, 0]


@torch.no_grad()
def uncertain_point_coords(
    logits: Tensor, num_points: int, oversample_ratio: float, importance_sample_ratio: float
) -> Tensor:
    """Training points per map: logits (F, C, H, W) -> coords (F, num_points, 2) in [0, 1]^2.

    The first ``int(importance_sample_ratio * num_points)`` are the most uncertain of
    ``int(num_points * oversample_ratio)`` uniform candidates, the rest are fresh uniform points
    (drawn from the global torch RNG of ``logits.device``).
    """
    frames = logits.shape[0]
    num_candidates = int(num_points * oversample_ratio)
    num_uncertain = int(importance_sample_ratio * num_points)
    candidates = torch.rand(frames, num_candidates, 2, device=logits.device)
    uncertainty = logit_uncertainty(sample_points(logits.float(), candidates))  # (F, M)
    chosen = uncertainty.topk(num_uncertain, dim=1).indices  # (F, k)
    uncertain = candidates.gather(1, chosen.unsqueeze(-1).expand(-1, -1, 2))
    uniform = torch.rand(frames, num_points - num_uncertain, 2, device=logits.device)
    return torch.cat([uncertain, uniform], dim=1)


def point_ce_dice(logits: Tensor, target: Tensor, coords: Tensor) -> tuple[Tensor, Tensor]:
    """Cross-entropy and dice of one clip at the given points.

    logits (F, C, h, w) class logits (background first); target (F, C, H, W) one-hot float; coords
    (F, P, 2) -> (ce, dice) scalars: ce = sum over frames of the mean over points of the soft-label
    cross-entropy; dice = mean over the C-1 objects of the sum over frames of the dice loss.
    """
    point_logits = sample_points(logits.float(), coords)  # (F, C, P)
    point_target = sample_points(target, coords)  # (F, C, P), soft labels
    ce = F.cross_entropy(point_logits, point_target, reduction="none").mean(dim=1).sum()
    prob = point_logits.softmax(dim=1)[:, 1:]
    truth = point_target[:, 1:]
    dice = 1.0 - (2.0 * (prob * truth).sum(-1) + 1.0) / (prob.sum(-1) + truth.sum(-1) + 1.0)  # (F, C-1)
    return ce, dice.sum(dim=0).mean()


def clip_losses(
    logits: Tensor,
    sensory_logits: Tensor,
    query_logits: Tensor,
    labels: Tensor,
    num_objects: Sequence[int] | Tensor,
    cfg: LossConfig,
) -> dict[str, Tensor]:
    """All loss terms of a batch of clips, and their weighted sum under ``"total"``.

    logits (B, F, N+1, H, W); sensory_logits (B, F, N+1, h, w); query_logits (B, F, N+1, L, h, w);
    labels (B, F, H, W) int64 in 0..num_objects[b] for the same F frames; num_objects (B,) real
    objects per clip (the channels beyond 1 + num_objects[b] are padding and ignored).
    Returns scalars ``ce``, ``dice``, ``sensory_ce``, ``sensory_dice``, ``query_ce_<l>``,
    ``query_dice_<l>`` (l = 0..L-1, unweighted) and ``total`` = ce + dice + sensory_weight *
    (sensory terms) + query_weight * (all query terms).
    """
    batch, _, channels = logits.shape[:3]
    levels = query_logits.shape[3]
    counts = [int(n) for n in num_objects]
    if len(counts) != batch or any(not 1 <= n < channels for n in counts):
        raise ValueError(f"clip_losses: num_objects {counts} must hold {batch} values in [1, {channels - 1}]")
    terms: dict[str, Tensor] = {}

    def add(prefix: str, suffix: str, pair: tuple[Tensor, Tensor]) -> None:
        for kind, value in zip(("ce", "dice"), pair):
            key = f"{prefix}{kind}{suffix}"
            terms[key] = terms[key] + value / batch if key in terms else value / batch

    for b, n in enumerate(counts):
        target = F.one_hot(labels[b], n + 1).permute(0, 3, 1, 2).float()  # (F, n+1, H, W)

        def loss_at(clip_logits: Tensor) -> tuple[Tensor, Tensor]:
            coords = uncertain_point_coords(
                clip_logits, cfg.num_points, cfg.oversample_ratio, cfg.importance_sample_ratio
            )
            return point_ce_dice(clip_logits, target, coords)

        add("", "", loss_at(logits[b, :, : n + 1]))
        add("sensory_", "", loss_at(sensory_logits[b, :, : n + 1]))
        for level in range(levels):
            add("query_", f"_{level}", loss_at(query_logits[b, :, : n + 1, level]))

    total = terms["ce"] + terms["dice"]
    total = total + cfg.sensory_weight * (terms["sensory_ce"] + terms["sensory_dice"])
    for level in range(levels):
        total = total + cfg.query_weight * (terms[f"query_ce_{level}"] + terms[f"query_dice_{level}"])
    terms["total"] = total
    return terms
