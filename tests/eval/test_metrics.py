"""J, F, Recall and Decay against values worked out by hand on small crafted masks.

Most masks are 10x10, whose diagonal (14.1 px) gives a boundary tolerance of ceil(0.008 * 14.1) = 1
pixel: the disk of radius 1 is a pixel and its 4 neighbours. Coordinates are (row, column).
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from s3.eval.metrics import (
    boundary_f_measure,
    boundary_map,
    boundary_radius,
    disk_kernel,
    frame_statistics,
    object_scores,
    region_similarity,
)


def box(rows: range, cols: range, shape: tuple[int, int] = (10, 10)) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    mask[rows.start : rows.stop, cols.start : cols.stop] = True
    return mask


def cells(shape: tuple[int, int], *points: tuple[int, int]) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    for point in points:
        mask[point] = True
    return mask


def perimeter(rows: range, cols: range, shape: tuple[int, int] = (10, 10)) -> np.ndarray:
    """The 1-pixel ring around the rectangle rows x cols (inclusive ranges given as range objects)."""
    ring = box(rows, cols, shape)
    ring[rows.start + 1 : rows.stop - 1, cols.start + 1 : cols.stop - 1] = False
    return ring


SQUARE = box(range(2, 6), range(2, 6))  # 4x4 object, 16 pixels


# ---------------------------------------------------------------- tolerance and structuring element


@pytest.mark.parametrize(
    "shape, bound_th, radius",
    [
        ((480, 854), 0.008, 8),  # diagonal 979.6 -> 7.84 -> 8
        ((1080, 1920), 0.008, 18),  # diagonal 2202.9 -> 17.6 -> 18
        ((300, 400), 0.008, 4),  # diagonal exactly 500 -> 4.0: ceil keeps 4
        ((10, 10), 0.008, 1),
        ((480, 854), 3, 3),  # >= 1 is a radius in pixels
    ],
)
def test_boundary_radius(shape: tuple[int, int], bound_th: float, radius: int) -> None:
    assert boundary_radius(shape, bound_th) == radius


def test_boundary_radius_rejects_fractional_pixels() -> None:
    with pytest.raises(ValueError, match="whole number"):
        boundary_radius((10, 10), 2.5)


def test_disk_kernel_radius_2() -> None:
    expected = np.array(
        [
            [0, 0, 1, 0, 0],
            [0, 1, 1, 1, 0],
            [1, 1, 1, 1, 1],
            [0, 1, 1, 1, 0],
            [0, 0, 1, 0, 0],
        ],
        dtype=np.uint8,
    )
    np.testing.assert_array_equal(disk_kernel(2), expected)


# ---------------------------------------------------------------- boundary maps


def test_boundary_of_a_square_is_the_ring_shifted_towards_the_origin() -> None:
    # Foreground pixels of the right column / bottom row, and background pixels just left / above.
    np.testing.assert_array_equal(boundary_map(SQUARE), perimeter(range(1, 6), range(1, 6)))


def test_boundary_of_a_single_pixel_is_a_2x2_block() -> None:
    expected = cells((10, 10), (3, 3), (3, 4), (4, 3), (4, 4))
    np.testing.assert_array_equal(boundary_map(cells((10, 10), (4, 4))), expected)


def test_boundary_of_a_thin_line_is_two_rows() -> None:
    line = box(range(4, 5), range(2, 8))  # row 4, columns 2..7
    expected = box(range(3, 5), range(1, 8))  # rows 3-4, columns 1..7
    np.testing.assert_array_equal(boundary_map(line), expected)


def test_last_row_and_column_compare_inside_the_image_only() -> None:
    corner = box(range(4, 6), range(4, 6), shape=(6, 6))  # 2x2 block in the bottom-right corner
    # (3,3) SE, (3,4) S, (4,3) E neighbours are foreground; (3,5) last column vs (4,5) below;
    # (5,3) last row vs (5,4) right. The block's own pixels touch only the border: no boundary.
    expected = cells((6, 6), (3, 3), (3, 4), (3, 5), (4, 3), (5, 3))
    np.testing.assert_array_equal(boundary_map(corner), expected)


def test_full_frame_mask_has_no_boundary() -> None:
    assert not boundary_map(np.ones((7, 9), dtype=bool)).any()


# ---------------------------------------------------------------- J


def test_region_similarity_cases() -> None:
    empty = np.zeros((10, 10), dtype=bool)
    shifted_2 = box(range(2, 6), range(4, 8))
    assert region_similarity(empty, empty) == 1.0  # empty ground truth, empty prediction
    assert region_similarity(SQUARE, empty) == 0.0  # empty prediction
    assert region_similarity(empty, SQUARE) == 0.0  # empty ground truth
    assert region_similarity(SQUARE, shifted_2) == pytest.approx(8 / 24)  # 8 shared of 16 + 16 - 8


def test_region_similarity_ignores_void_in_both_masks() -> None:
    wide = box(range(2, 6), range(2, 8))  # the square plus columns 6-7
    void = box(range(2, 6), range(6, 8))
    assert region_similarity(SQUARE, wide) == pytest.approx(16 / 24)
    assert region_similarity(SQUARE, wide, void) == 1.0


# ---------------------------------------------------------------- F


def test_boundary_f_empty_cases() -> None:
    empty = np.zeros((10, 10), dtype=bool)
    assert boundary_f_measure(empty, empty) == 1.0  # no boundary anywhere: P = R = 1
    assert boundary_f_measure(SQUARE, empty) == 0.0  # empty prediction: P = 1, R = 0
    assert boundary_f_measure(empty, SQUARE) == 0.0  # empty ground truth: P = 0, R = 1


def test_full_frame_ground_truth_has_no_boundary() -> None:
    full = np.ones((10, 10), dtype=bool)
    assert boundary_f_measure(full, np.zeros((10, 10), dtype=bool)) == 1.0  # both boundaries empty
    assert boundary_f_measure(full, SQUARE) == 0.0  # only the prediction has one: P = 0, R = 1


def test_boundary_f_of_shifted_squares() -> None:
    # Shift by 1: every boundary pixel has a 4-neighbour on the other ring -> F = 1 (J is 12/20).
    assert boundary_f_measure(SQUARE, box(range(2, 6), range(3, 7))) == 1.0
    # Shift by 2: ground-truth ring rows 1,5 x cols 1..5 and cols 1,5 x rows 1..5; predicted ring
    # rows 1,5 x cols 3..7 and cols 3,7 x rows 1..5. Predicted pixels within 1 px of the other ring:
    # rows 1 and 5 at cols 3..6 (8) + (2,3) and (4,3) (2) = 10 of 16; by symmetry recall is 10/16.
    assert boundary_f_measure(SQUARE, box(range(2, 6), range(4, 8))) == pytest.approx(10 / 16)


def test_boundary_f_of_tiny_objects() -> None:
    pixel = cells((10, 10), (4, 4))
    # One column off: J = 0, but the 2x2 boundary blocks [3-4]x[3-4] and [3-4]x[4-5] are within 1 px.
    assert region_similarity(pixel, cells((10, 10), (4, 5))) == 0.0
    assert boundary_f_measure(pixel, cells((10, 10), (4, 5))) == 1.0
    # Two columns off: blocks [3-4]x[3-4] and [3-4]x[5-6]; half of each is next to the other -> 0.5.
    assert boundary_f_measure(pixel, cells((10, 10), (4, 6))) == pytest.approx(0.5)


def test_boundary_f_of_thin_objects() -> None:
    line = box(range(4, 5), range(2, 8))  # boundary: rows 3-4, cols 1..7
    # One row down (boundary rows 4-5): row 4 is shared, row 5 / row 3 are 1 px from it -> F = 1.
    assert boundary_f_measure(line, box(range(5, 6), range(2, 8))) == 1.0
    # Two rows down (boundary rows 5-6): only row 5 / row 4 are within 1 px -> P = R = 7/14.
    assert boundary_f_measure(line, box(range(6, 7), range(2, 8))) == pytest.approx(0.5)


def test_boundary_f_removes_void_from_both_masks() -> None:
    wide = box(range(2, 6), range(2, 8))  # boundary: ring rows 1..5 x cols 1..7, 20 pixels
    # Precision: rows 1,5 cols 1..6 (12) + col 1 rows 2..4 (3) = 15/20. Recall: ring of the square
    # except (3,5) = 15/16. F = 2 * 0.75 * 0.9375 / 1.6875 = 5/6.
    assert boundary_f_measure(SQUARE, wide) == pytest.approx(5 / 6)
    void = box(range(0, 10), range(6, 10))
    assert boundary_f_measure(SQUARE, wide, void) == 1.0


def test_boundary_f_uses_the_image_diagonal_tolerance() -> None:
    # 100x100: ceil(0.008 * 141.4) = 2 px, so a 2-column shift of a square matches everywhere.
    square = box(range(20, 40), range(20, 40), shape=(100, 100))
    assert boundary_f_measure(square, box(range(20, 40), range(22, 42), shape=(100, 100))) == 1.0
    assert boundary_f_measure(square, box(range(20, 40), range(22, 42), shape=(100, 100)), bound_th=1) < 1.0


def _full_frame_f(gt: np.ndarray, pred: np.ndarray, radius: int) -> float:
    """F straight from the definition on whole frames (no windowing), for the cross-check below."""
    kernel = disk_kernel(radius)
    gt_b, pred_b = boundary_map(gt), boundary_map(pred)
    gt_near = cv2.dilate(gt_b.astype(np.uint8), kernel) > 0
    pred_near = cv2.dilate(pred_b.astype(np.uint8), kernel) > 0
    n_gt, n_pred = gt_b.sum(), pred_b.sum()
    if n_gt == 0 and n_pred == 0:
        return 1.0
    if n_gt == 0 or n_pred == 0:
        return 0.0
    precision = (pred_b & gt_near).sum() / n_pred
    recall = (gt_b & pred_near).sum() / n_gt
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def test_windowed_f_equals_the_full_frame_computation() -> None:
    rng = np.random.default_rng(0)
    shape = (48, 64)  # diagonal 80 -> 1 px; bound_th=4 below exercises a wider disk near the borders
    for _ in range(60):
        masks = []
        for _ in range(2):
            top, left = rng.integers(-4, shape[0]), rng.integers(-4, shape[1])
            rows = range(max(top, 0), top + rng.integers(1, 20))
            cols = range(max(left, 0), left + rng.integers(1, 20))
            blob = box(rows, cols, shape)
            blob ^= rng.random(shape) < 0.02  # speckle: holes and stray pixels
            masks.append(blob)
        for bound_th in (0.008, 4):
            expected = _full_frame_f(masks[0], masks[1], boundary_radius(shape, bound_th))
            assert boundary_f_measure(masks[0], masks[1], bound_th=bound_th) == pytest.approx(expected, abs=1e-15)


# ---------------------------------------------------------------- per-object scores on label maps


def test_object_scores_on_label_maps() -> None:
    gt = np.zeros((10, 10), dtype=np.uint8)
    pred = np.zeros((10, 10), dtype=np.uint8)
    gt[SQUARE] = 1
    pred[box(range(2, 6), range(4, 8))] = 1  # object 1 shifted by 2 columns
    gt[8, 2:8] = 2  # object 2 missed by the prediction
    pred[0, 0] = 4  # object 4 only predicted; object 3 absent from both
    j, f = object_scores(gt, pred, [1, 2, 3, 4])
    np.testing.assert_allclose(j, [8 / 24, 0.0, 1.0, 0.0])
    np.testing.assert_allclose(f, [10 / 16, 0.0, 1.0, 0.0])


def test_object_scores_with_void() -> None:
    gt = np.zeros((10, 10), dtype=np.uint8)
    gt[SQUARE] = 1
    pred = np.where(box(range(2, 6), range(2, 8)), 1, 0).astype(np.uint8)
    void = box(range(2, 6), range(6, 8))
    np.testing.assert_allclose(object_scores(gt, pred, [1]), [[16 / 24], [5 / 6]])
    np.testing.assert_allclose(object_scores(gt, pred, [1], void), [[1.0], [1.0]])


# ---------------------------------------------------------------- Mean, Recall, Decay


def test_frame_statistics_eight_frames() -> None:
    # Cuts round(linspace(1, 8, 5)) - 1 = [0, 2, 4, 5, 7]: first bin frames 0-2, last bin frames 5-7
    # (np.array_split would take frames 0-1 and 6-7 and give a decay of 0.9).
    stats = frame_statistics(np.array([1.0, 0.8, 0.6, 0.4, 0.4, 0.2, 0.0, 0.0]))
    assert stats.mean == pytest.approx(3.4 / 8)
    assert stats.recall == pytest.approx(3 / 8)
    assert stats.decay == pytest.approx(0.8 - 0.2 / 3)


def test_frame_statistics_rounds_halves_up() -> None:
    # linspace(1, 7, 5) = [1, 2.5, 4, 5.5, 7] -> [1, 3, 4, 6, 7] - 1: first bin frames 0-2, last 5-6
    # (rounding half to even would make the first bin frames 0-1 and the decay 0.95).
    stats = frame_statistics(np.array([1.0, 1.0, 0.4, 0.3, 0.2, 0.1, 0.0]))
    assert stats.decay == pytest.approx(2.4 / 3 - 0.05)


def test_frame_statistics_recall_is_strictly_above_half_and_short_sequences() -> None:
    # Three frames: cuts [0, 1, 1, 2, 2] -> first bin frames 0-1, last bin frame 2.
    stats = frame_statistics(np.array([0.5, 0.5, 1.0]))
    assert (stats.mean, stats.recall, stats.decay) == pytest.approx((2 / 3, 1 / 3, -0.5))
    single = frame_statistics(np.array([0.7]))
    assert (single.mean, single.recall, single.decay) == pytest.approx((0.7, 1.0, 0.0))
    with pytest.raises(ValueError, match="non-empty"):
        frame_statistics(np.array([]))
