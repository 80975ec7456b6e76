"""COCO RLE: hand-worked strings, column-major order, agreement with a naive run decoder."""

from __future__ import annotations

import numpy as np
import pytest

from s3.data.rle import rle_decode, rle_encode


def naive_mask_from_runs(runs: list[int], height: int, width: int) -> np.ndarray:
    """Reference: paint alternating runs down the columns one pixel at a time."""
    mask = np.zeros((height, width), dtype=bool)
    position, value = 0, False
    for run in runs:
        for _ in range(run):
            mask[position % height, position // height] = value
            position += 1
        value = not value
    return mask


@pytest.mark.parametrize(
    ("runs", "size", "text"),
    [
        ([9], [3, 3], "9"),  # one background run: '0' + 9
        ([0, 9], [3, 3], "09"),  # an empty background run first, then all foreground
        ([100], [10, 10], "T3"),  # 100 = 3 * 32 + 4: group 4 with the continuation bit, then 3
        ([5, 3, 100, 2], [10, 11], "53T3O"),  # the 4th run is stored as 2 - 3 = -1 -> one group 31 ('O')
    ],
)
def test_hand_worked_counts_strings(runs: list[int], size: list[int], text: str) -> None:
    height, width = size
    expected = naive_mask_from_runs(runs, height, width)
    assert rle_encode(expected) == {"size": size, "counts": text}
    np.testing.assert_array_equal(rle_decode({"size": size, "counts": text}), expected)
    np.testing.assert_array_equal(rle_decode({"size": size, "counts": runs}), expected)


def test_runs_walk_down_columns() -> None:
    # pixel order (row, col): (0,0) (1,0) (0,1) (1,1) (0,2) (1,2); runs: 1 background, 2 foreground, 3 background
    mask = rle_decode({"size": [2, 3], "counts": [1, 2, 3]})
    np.testing.assert_array_equal(mask, [[False, True, False], [True, False, False]])
    assert rle_encode(mask)["counts"] == "123"


def test_decode_matches_naive_decoder_and_roundtrips() -> None:
    rng = np.random.default_rng(0)
    for _ in range(60):
        height, width = (int(v) for v in rng.integers(1, 30, size=2))
        mask = rng.random((height, width)) < rng.uniform(0.05, 0.95)
        if rng.random() < 0.5:  # large blobs make long runs (multi-group numbers, negative deltas)
            mask = np.zeros((height, width), dtype=bool)
            mask[: rng.integers(height + 1), : rng.integers(width + 1)] = True
        encoded = rle_encode(mask)
        assert encoded["size"] == [height, width] and isinstance(encoded["counts"], str)
        decoded = rle_decode(encoded)
        assert decoded.dtype == bool and decoded.shape == (height, width)
        np.testing.assert_array_equal(decoded, mask)
        np.testing.assert_array_equal(rle_decode({"size": [height, width], "counts": encoded["counts"].encode()}), mask)


def test_long_runs_with_large_differences() -> None:
    runs = [70000, 3, 1, 90000, 5, 2, 17]
    height, width = 7, sum(runs) // 7
    runs[-1] += height * width - sum(runs)
    expected = naive_mask_from_runs(runs, height, width)
    encoded = rle_encode(expected)
    np.testing.assert_array_equal(rle_decode(encoded), expected)
    np.testing.assert_array_equal(rle_decode({"size": [height, width], "counts": runs}), expected)


@pytest.mark.parametrize(
    "rle",
    [
        {"size": [3, 3], "counts": [4, 4]},  # runs sum to 8, not 9
        {"size": [3, 3], "counts": "T"},  # string ends inside a number
        {"counts": "9"},  # no size
    ],
)
def test_malformed_rle_is_rejected(rle: dict) -> None:
    with pytest.raises(ValueError):
        rle_decode(rle)
