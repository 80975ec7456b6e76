"""Reading object-id label maps (indexed PNG masks) for scoring.

A VOS mask is a single-channel PNG whose pixel value is the object id (0 = background). Mode ``P``
stores the ids as palette indices (the palette is cosmetic), mode ``L`` as grey levels; both are
read back as the raw ids. Every problem with an input file raises :class:`MaskFileError` with a
one-line message that starts with the offending path.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

LABEL_MAP_MODES = ("P", "L")
VOID_LABEL = 255  # DAVIS 2017 marks ignored pixels with this value


class MaskFileError(ValueError):
    """A mask file or folder is missing, unreadable, or inconsistent with the ground truth."""


def read_label_map(path: Path) -> np.ndarray:
    """The object ids of a mode ``P`` or ``L`` PNG as an (H, W) uint8 array."""
    try:
        with Image.open(path) as image:
            if image.mode not in LABEL_MAP_MODES:
                raise MaskFileError(
                    f"{path}: image mode {image.mode!r} is not a label map (expected indexed 'P' or grayscale 'L')"
                )
            return np.array(image, dtype=np.uint8)
    except FileNotFoundError:
        raise MaskFileError(f"{path}: file not found") from None
    except (UnidentifiedImageError, OSError) as err:
        raise MaskFileError(f"{path}: not a readable image ({err})") from None


def list_mask_frames(folder: Path) -> list[Path]:
    """The ``*.png`` files of a sequence folder, in frame order (sorted by name)."""
    if not folder.is_dir():
        raise MaskFileError(f"{folder}: folder not found")
    frames = sorted(folder.glob("*.png"))
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
