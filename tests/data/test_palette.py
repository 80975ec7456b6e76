"""Indexed PNG masks: the DAVIS palette and lossless id round trips in modes P and L."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from s3.data.palette import davis_palette, read_mask, write_mask

# Entries of the palette shipped with every DAVIS 2017 annotation.
KNOWN_DAVIS_COLOURS = {
    0: (0, 0, 0),
    1: (128, 0, 0),
    2: (0, 128, 0),
    3: (128, 128, 0),
    4: (0, 0, 128),
    5: (128, 0, 128),
    6: (0, 128, 128),
    7: (128, 128, 128),
    8: (64, 0, 0),
    9: (192, 0, 0),
    10: (64, 128, 0),
    255: (224, 224, 192),
}


def test_davis_palette_matches_the_dataset_palette() -> None:
    palette = davis_palette()
    assert palette.shape == (256, 3) and palette.dtype == np.uint8
    for index, colour in KNOWN_DAVIS_COLOURS.items():
        assert tuple(palette[index]) == colour, index
    assert len({tuple(c) for c in palette}) == 256  # every id gets its own colour


@pytest.mark.parametrize("mode", ["P", "L"])
def test_round_trip_keeps_every_id_exactly(tmp_path: Path, mode: str) -> None:
    labels = np.random.default_rng(0).choice([0, 1, 2, 7, 42, 254, 255], size=(37, 53)).astype(np.int64)
    path = tmp_path / "mask.png"
    write_mask(path, labels, mode=mode)
    with Image.open(path) as image:
        assert image.mode == mode
        if mode == "P":
            assert np.array_equal(np.array(image.getpalette()[:768]).reshape(256, 3), davis_palette())
    read = read_mask(path)
    assert read.dtype == np.uint8
    assert np.array_equal(read, labels)


def test_read_returns_indices_not_colours_for_any_palette(tmp_path: Path) -> None:
    labels = np.array([[0, 3], [5, 3]], dtype=np.uint8)
    image = Image.fromarray(labels)
    image.putpalette(list(range(255, -1, -1)) * 3)  # an unrelated palette
    image.save(tmp_path / "other.png")
    assert np.array_equal(read_mask(tmp_path / "other.png"), labels)


def test_rgb_masks_are_refused_with_the_file_name(tmp_path: Path) -> None:
    path = tmp_path / "rgb.png"
    Image.fromarray(np.zeros((4, 4, 3), dtype=np.uint8)).save(path)
    with pytest.raises(ValueError, match="rgb.png: image mode 'RGB' is not a label map"):
        read_mask(path)


@pytest.mark.parametrize(
    "labels, message",
    [
        (np.full((3, 3), 256), r"ids must lie in \[0, 255\]"),
        (np.full((3, 3), -1), r"ids must lie in \[0, 255\]"),
        (np.zeros((3, 3, 1), dtype=np.uint8), "2-D integer array"),
        (np.zeros((3, 3), dtype=np.float32), "2-D integer array"),
    ],
)
def test_write_refuses_what_a_mask_cannot_hold(tmp_path: Path, labels: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        write_mask(tmp_path / "bad.png", labels)
    assert not (tmp_path / "bad.png").exists()
