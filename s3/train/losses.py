"""Training losses: cross-entropy and dice, point-sampled (``loss.kind=point``) or over every pixel
with a bootstrapped cross-entropy (``loss.kind=bootstrap``).

All logits here are soft-aggregated class logits with the background first: (..., K+1, H, W) for
K objects. Per clip, frames are handled as a batch of F = T-1 maps.

``point`` (S3, Cutie). Points are normalised (x, y) coordinates in [0, 1]^2, so one set of points
addresses a full-resolution map and a stride-16 auxiliary map alike (bilinear sampling, ``align_corners=False``, zero padding: within half a pixel
of the border, values blend towards 0, as in the reference).

Per frame, ``num_points * oversample_ratio`` uniform candidates are scored by the gap between the
two largest class logits (small gap = uncertain); the ``importance_sample_ratio`` share of
``num_points`` with the smallest gap is kept and the rest is filled with fresh uniform points.
At those points: cross-entropy against the bilinearly sampled one-hot target (soft labels),
averaged over points and summed over frames; dice on the softmax probabilities of the objects
(background excluded), ``1 - (2 sum(p g) + 1) / (sum p + sum g + 1)`` over points, summed over
frames and averaged over objects. Each clip's terms are divided by the batch size and summed.

``bootstrap`` (STMA, XMem). Per frame, the pixel-wise cross-entropy against the labels is sorted and
only the hardest share p (``LossConfig.bootstrap_fraction`` of the stage iteration) is averaged;
the dice is the same formula over every pixel. Sums and averages as above. (Auxiliary maps, if a
model gives them, are upsampled bilinearly to the label size first.)
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

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


def dice_loss(prob: Tensor, truth: Tensor) -> Tensor:
    """prob, truth (F, K, P) object probabilities and targets over P points or pixels -> (F, K):
    ``1 - (2 sum(p g) + 1) / (sum p + sum g + 1)`` (0 when prob equals a binary truth)."""
    return 1.0 - (2.0 * (prob * truth).sum(-1) + 1.0) / (prob.sum(-1) + truth.sum(-1) + 1.0)


def point_ce_dice(logits: Tensor, target: Tensor, coords: Tensor) -> tuple[Tensor, Tensor]:
    """Cross-entropy and dice of one clip at the given points.

    logits (F, C, h, w) class logits (background first); target (F, C, H, W) one-hot float; coords
    (F, P, 2) -> (ce, dice) scalars: ce = sum over frames of the mean over points of the soft-label
    cross-entropy; dice = mean over the C-1 objects of the sum over frames of the dice loss.
    """
    point_logits = sample_points(logits.float(), coords)  # (F, C, P)
    point_target = sample_points(target, coords)  # (F, C, P), soft labels
    ce = F.cross_entropy(point_logits, point_target, reduction="none").mean(dim=1).sum()
    dice = dice_loss(point_logits.softmax(dim=1)[:, 1:], point_target[:, 1:])  # (F, C-1)
    return ce, dice.sum(dim=0).mean()


def bootstrapped_ce_dice(logits: Tensor, labels: Tensor, top_p: float) -> tuple[Tensor, Tensor]:
    """Bootstrapped cross-entropy and dice of one clip over every pixel.

    logits (F, C, H, W) class logits (background first); labels (F, H, W) int64 in 0..C-1; top_p in
    (0, 1] -> (ce, dice) scalars: ce = sum over frames of the mean of the ``ceil(top_p * H * W)``
    largest pixel cross-entropies (top_p = 1: the plain mean); dice = mean over the C-1 objects of
    the sum over frames of the dice loss of the softmax probabilities.
    """
    logits = logits.float()
    pixel_ce = F.cross_entropy(logits, labels, reduction="none").flatten(1)  # (F, H*W)
    kept = max(1, math.ceil(top_p * pixel_ce.shape[1]))
    hardest = pixel_ce if kept == pixel_ce.shape[1] else pixel_ce.topk(kept, dim=1, sorted=False).values
    ce = hardest.mean(dim=1).sum()
    truth = F.one_hot(labels, logits.shape[1]).permute(0, 3, 1, 2)[:, 1:].flatten(2).float()  # (F, C-1, H*W)
    dice = dice_loss(logits.softmax(dim=1)[:, 1:].flatten(2), truth)
    return ce, dice.sum(dim=0).mean()


def clip_losses(
    logits: Tensor,
    sensory_logits: Optional[Tensor],
    query_logits: Optional[Tensor],
    labels: Tensor,
    num_objects: Sequence[int] | Tensor,
    cfg: LossConfig,
    iteration: int = 0,
) -> dict[str, Tensor]:
    """All loss terms of a batch of clips, and their weighted sum under ``"total"``.

    logits (B, F, N+1, H, W); sensory_logits (B, F, N+1, h, w) or None; query_logits
    (B, F, N+1, L, h, w) or None (models without those auxiliary heads); labels (B, F, H, W) int64
    in 0..num_objects[b] for the same F frames; num_objects (B,) real objects per clip (the channels
    beyond 1 + num_objects[b] are padding and ignored); iteration: the stage iteration (0-based),
    which sets the bootstrap share p of ``loss.kind=bootstrap``.
    Returns scalars ``ce``, ``dice``, ``sensory_ce``, ``sensory_dice``, ``query_ce_<l>``,
    ``query_dice_<l>`` (l = 0..L-1, unweighted; aux terms only when given), ``bootstrap_p`` with
    ``bootstrap``, and ``total`` = ce_weight * ce + dice_weight * dice + sensory_weight * (sensory
    terms) + query_weight * (all query terms). Aux maps are scored like the final ones.
    """
    batch, _, channels = logits.shape[:3]
    levels = 0 if query_logits is None else query_logits.shape[3]
    counts = [int(n) for n in num_objects]
    if len(counts) != batch or any(not 1 <= n < channels for n in counts):
        raise ValueError(f"clip_losses: num_objects {counts} must hold {batch} values in [1, {channels - 1}]")
    top_p = cfg.bootstrap_fraction(iteration)
    terms: dict[str, Tensor] = {}

    def add(prefix: str, suffix: str, pair: tuple[Tensor, Tensor]) -> None:
        for kind, value in zip(("ce", "dice"), pair):
            key = f"{prefix}{kind}{suffix}"
            terms[key] = terms[key] + value / batch if key in terms else value / batch

    for b, n in enumerate(counts):
        clip_labels = labels[b]
        target = F.one_hot(clip_labels, n + 1).permute(0, 3, 1, 2).float() if cfg.kind == "point" else None

        def loss_at(clip_logits: Tensor) -> tuple[Tensor, Tensor]:
            if target is None:  # bootstrap
                if clip_logits.shape[-2:] != clip_labels.shape[-2:]:
                    clip_logits = F.interpolate(
                        clip_logits.float(), size=clip_labels.shape[-2:], mode="bilinear", align_corners=False
                    )
                return bootstrapped_ce_dice(clip_logits, clip_labels, top_p)
            coords = uncertain_point_coords(
                clip_logits, cfg.num_points, cfg.oversample_ratio, cfg.importance_sample_ratio
            )
            return point_ce_dice(clip_logits, target, coords)

        add("", "", loss_at(logits[b, :, : n + 1]))
        if sensory_logits is not None:
            add("sensory_", "", loss_at(sensory_logits[b, :, : n + 1]))
        if query_logits is not None:
            for level in range(levels):
                add("query_", f"_{level}", loss_at(query_logits[b, :, : n + 1, level]))

    total = cfg.ce_weight * terms["ce"] + cfg.dice_weight * terms["dice"]
    if sensory_logits is not None:
        total = total + cfg.sensory_weight * (terms["sensory_ce"] + terms["sensory_dice"])
    for level in range(levels):
        total = total + cfg.query_weight * (terms[f"query_ce_{level}"] + terms[f"query_dice_{level}"])
    if cfg.kind == "bootstrap":
        terms["bootstrap_p"] = logits.new_tensor(top_p)
    terms["total"] = total
    return terms
