"""The DAVIS region (J) and boundary (F) measures, and their per-object Mean / Recall / Decay.

Definitions (those of the DAVIS 2017 benchmark code):

* J = |P ∩ G| / |P ∪ G|, counted outside the void region; 1 when the union is empty.
* F = 2PR / (P + R) over 1-pixel boundary maps (:func:`boundary_map`), where precision P is the
  fraction of predicted boundary pixels within ``radius`` of a ground-truth boundary pixel (a disk
  dilation) and recall R the converse. Void pixels are removed from both masks first. Empty
  boundaries: both empty -> P = R = 1; only the prediction's empty -> P = 1, R = 0; only the ground
  truth's empty -> P = 0, R = 1. F = 0 when P + R = 0.
* The tolerance ``radius`` is ``bound_th`` pixels when ``bound_th >= 1``, otherwise
  ``ceil(bound_th * image diagonal)`` (0.008 -> 8 pixels at 480x854).

Boundaries and dilations are computed inside the bounding window of the two masks (plus one pixel),
which gives exactly the full-frame result at a fraction of the cost for the usual small objects.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import cv2
import numpy as np

BOUND_TH = 0.008
RECALL_THRESHOLD = 0.5  # a frame counts towards Recall when its score is strictly above this
DECAY_BINS = 4


@dataclass(frozen=True)
class FrameStatistics:
    """Summary of one object's per-frame scores."""

    mean: float
    recall: float  # fraction of frames scoring > RECALL_THRESHOLD
    decay: float  # mean of the first quarter of the frames minus mean of the last quarter


def boundary_radius(shape: tuple[int, int], bound_th: float = BOUND_TH) -> int:
    """The boundary tolerance in pixels for an image of ``shape`` (H, W)."""
    if bound_th >= 1:
        if not float(bound_th).is_integer():
            raise ValueError(f"bound_th={bound_th} >= 1 is a radius in pixels and must be a whole number")
        return int(bound_th)
    if bound_th <= 0:
        raise ValueError(f"bound_th={bound_th} must be > 0")
    return int(np.ceil(bound_th * np.linalg.norm(shape)))


def disk_kernel(radius: int) -> np.ndarray:
    """Structuring element of the pixels (dy, dx) with dy² + dx² <= radius², as uint8."""
    offsets = np.arange(-radius, radius + 1)
    return (offsets[:, None] ** 2 + offsets[None, :] ** 2 <= radius**2).astype(np.uint8)


def boundary_map(mask: np.ndarray) -> np.ndarray:
    """1-pixel-wide boundary of a binary mask, offset half a pixel towards the origin.

    A pixel is on the boundary when it differs from its right, lower or lower-right neighbour.
    Pixels of the last row compare with their right neighbour only, those of the last column with
    their lower neighbour only, and the bottom-right pixel is never a boundary: the image border
    itself is not a boundary.
    """
    mask = np.asarray(mask, dtype=bool)
    boundary = np.zeros_like(mask)
    core = mask[:-1, :-1]
    boundary[:-1, :-1] = (core != mask[:-1, 1:]) | (core != mask[1:, :-1]) | (core != mask[1:, 1:])
    boundary[-1, :-1] = mask[-1, :-1] != mask[-1, 1:]
    boundary[:-1, -1] = mask[:-1, -1] != mask[1:, -1]
    return boundary


def _support_window(mask: np.ndarray) -> Optional[tuple[slice, slice]]:
    """Rows/columns of the mask's bounding box grown by one pixel (clipped), or None if it is empty.

    Every boundary pixel of the mask lies in the box grown by one pixel up and left; the extra row
    and column below and right give the last box pixels their true neighbours, so
    :func:`boundary_map` of the window equals the full-frame map restricted to the window.
    """
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    height, width = mask.shape
    return (
        slice(max(rows[0] - 1, 0), min(rows[-1] + 2, height)),
        slice(max(cols[0] - 1, 0), min(cols[-1] + 2, width)),
    )


def _boundary_f(gt: np.ndarray, pred: np.ndarray, kernel: np.ndarray) -> float:
    """F of two binary masks that already exclude void (full frames or a common support window)."""
    gt_boundary = boundary_map(gt)
    pred_boundary = boundary_map(pred)
    n_gt = int(gt_boundary.sum())
    n_pred = int(pred_boundary.sum())
    if n_gt == 0 and n_pred == 0:
        return 1.0
    if n_pred == 0:
        precision, recall = 1.0, 0.0
    elif n_gt == 0:
        precision, recall = 0.0, 1.0
    else:
        # Dilation never looks outside the window: cv2's default border adds nothing to a dilation.
        gt_near = cv2.dilate(gt_boundary.view(np.uint8), kernel).view(bool)
        pred_near = cv2.dilate(pred_boundary.view(np.uint8), kernel).view(bool)
        precision = np.count_nonzero(pred_boundary & gt_near) / float(n_pred)
        recall = np.count_nonzero(gt_boundary & pred_near) / float(n_gt)
    if precision + recall == 0:
        return 0.0
    return 2 * precision * recall / (precision + recall)


def region_similarity(gt: np.ndarray, pred: np.ndarray, void: Optional[np.ndarray] = None) -> float:
    """J of two binary (H, W) masks; pixels where ``void`` is true are ignored."""
    gt, pred = _without_void(gt, pred, void)
    union = np.count_nonzero(gt | pred)
    return 1.0 if union == 0 else np.count_nonzero(gt & pred) / union


def boundary_f_measure(
    gt: np.ndarray, pred: np.ndarray, void: Optional[np.ndarray] = None, bound_th: float = BOUND_TH
) -> float:
    """F of two binary (H, W) masks; pixels where ``void`` is true are removed from both."""
    gt, pred = _without_void(gt, pred, void)
    kernel = disk_kernel(boundary_radius(gt.shape, bound_th))
    window = _support_window(gt | pred)
    if window is None:
        return 1.0
    return _boundary_f(gt[window], pred[window], kernel)


def object_scores(
    gt_labels: np.ndarray,
    pred_labels: np.ndarray,
    object_ids: Sequence[int],
    void: Optional[np.ndarray] = None,
    bound_th: float = BOUND_TH,
) -> tuple[np.ndarray, np.ndarray]:
    """J and F of each id in ``object_ids`` for one frame of (H, W) label maps, as two float arrays.

    Each object is compared on its own support window; an id absent from both maps scores 1 and 1.
    """
    if gt_labels.shape != pred_labels.shape:
        raise ValueError(f"label maps differ in size: {gt_labels.shape} vs {pred_labels.shape}")
    kernel = disk_kernel(boundary_radius(gt_labels.shape, bound_th))
    keep = None if void is None else ~np.asarray(void, dtype=bool)
    j_scores = np.ones(len(object_ids))
    f_scores = np.ones(len(object_ids))
    for index, object_id in enumerate(object_ids):
        gt = gt_labels == object_id
        pred = pred_labels == object_id
        if keep is not None:
            gt &= keep
            pred &= keep
        window = _support_window(gt | pred)
        if window is None:
            continue
        gt, pred = gt[window], pred[window]
        j_scores[index] = np.count_nonzero(gt & pred) / np.count_nonzero(gt | pred)
        f_scores[index] = _boundary_f(gt, pred, kernel)
    return j_scores, f_scores


def frame_statistics(values: np.ndarray) -> FrameStatistics:
    """Mean, Recall and Decay of one object's per-frame scores (in frame order).

    Decay uses the DAVIS binning: the frame indices are cut at ``round(linspace(1, n, 5)) - 1``
    (halves rounded up), and bin ``k`` holds frames ``cut[k] .. cut[k+1]`` inclusive, so adjacent
    bins share their edge frame. With 8 frames the first bin is frames 0-2 and the last 5-7.
    (The official code stores the cuts as uint8, which wraps around beyond 256 scored frames; these
    do not wrap, and agree with it on every shorter sequence.)
    """
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1 or values.size == 0:
        raise ValueError(f"need a non-empty 1-D array of per-frame scores, got shape {values.shape}")
    cuts = (np.round(np.linspace(1, values.size, DECAY_BINS + 1) + 1e-10) - 1).astype(np.int64)
    first_bin = values[cuts[0] : cuts[1] + 1]
    last_bin = values[cuts[-2] : cuts[-1] + 1]
    return FrameStatistics(
        mean=float(np.mean(values)),
        recall=float(np.mean(values > RECALL_THRESHOLD)),
        decay=float(np.mean(first_bin) - np.mean(last_bin)),
    )


def _without_void(
    gt: np.ndarray, pred: np.ndarray, void: Optional[np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """Boolean copies of two same-size 2-D masks with the void pixels cleared."""
    gt = np.asarray(gt, dtype=bool)
    pred = np.asarray(pred, dtype=bool)
    if gt.ndim != 2 or gt.shape != pred.shape:
        raise ValueError(f"masks must be two (H, W) arrays of one size, got {gt.shape} and {pred.shape}")
    if void is None:
        return gt, pred
    void = np.asarray(void, dtype=bool)
    if void.shape != gt.shape:
        raise ValueError(f"void mask {void.shape} differs from the masks {gt.shape}")
    return gt & ~void, pred & ~void
