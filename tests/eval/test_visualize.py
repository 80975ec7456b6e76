"""Overlays: each object blended with its palette colour, for id masks of any integer type."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from s3.data.palette import davis_palette
from s3.eval.visualize import OVERLAY_ALPHA, OverlayWriter, overlay


@pytest.mark.parametrize("dtype", [np.uint8, np.int32, np.int64])
def test_overlay_blends_objects_with_their_palette_colour(dtype: type) -> None:
    image = np.full((4, 6, 3), 100, np.uint8)
    ids = np.zeros((4, 6), dtype)
    ids[1, 2], ids[2, 3] = 1, 255
    out = overlay(image, ids)
    assert out.dtype == np.uint8 and out.shape == image.shape
    assert np.array_equal(out[ids == 0], image[ids == 0])  # background untouched
    for obj in (1, 255):
        expected = np.round(100 * (1 - OVERLAY_ALPHA) + davis_palette()[obj].astype(float) * OVERLAY_ALPHA)
        assert np.array_equal(out[ids == obj][0], expected.astype(np.uint8))


def test_ids_past_255_take_colours_modulo_256() -> None:
    image = np.zeros((2, 2, 3), np.uint8)
    assert np.array_equal(overlay(image, np.full((2, 2), 257)), overlay(image, np.full((2, 2), 1)))


def test_overlay_writer_can_leave_out_the_images(tmp_path: Path) -> None:
    writer = OverlayWriter(tmp_path / "clip", fps=5, save_images=False)
    for _ in range(3):
        writer.add("f", np.zeros((16, 16, 3), np.uint8), np.ones((16, 16), np.uint8))
    writer.close()
    capture = cv2.VideoCapture(str(tmp_path / "clip.mp4"))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 3
    capture.release()
    assert not (tmp_path / "clip").exists()
