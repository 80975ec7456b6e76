"""Mask folders and label maps as the scorer sees them (files are read by ``s3.data.palette.read_mask``).

Every problem with an input file raises :class:`MaskFileError` with a one-line message that starts
with the offending path.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from s3.data.frames import in_frame_order
from s3.data.palette import VOID_LABEL, MaskFileError


def list_mask_frames(folder: Path) -> list[Path]:
    """The ``*.png`` files of a sequence folder, in frame order (``s3.data.frames``: 2 before 10)."""
    if not folder.is_dir():
        raise MaskFileError(f"{folder}: folder not found")
    frames = in_frame_order(folder.glob("*.png"))
    if not frames:
        raise MaskFileError(f"{folder}: no .png masks in this folder")
    return frames


def present_ids(labels: np.ndarray) -> list[int]:
    """The non-zero ids that occur in a label map, ascending."""
    counts = np.bincount(labels.ravel(), minlength=256)
    return [int(i) for i in np.flatnonzero(counts[1:]) + 1]


def split_void(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``labels`` with void pixels (255) set to background, and the boolean void mask."""
    void = labels == VOID_LABEL
    return np.where(void, np.uint8(0), labels), void
