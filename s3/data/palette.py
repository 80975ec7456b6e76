"""Indexed PNG masks: the DAVIS palette and lossless reading/writing of object-id label maps.

A VOS mask is a single-channel PNG whose pixel value is the object id (0 = background). Mode ``P``
stores the ids as palette indices (the palette only changes how viewers colour them); mode ``L``
stores them as plain grey levels. Both are read back as the raw ids, never as colours.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from s3.config.validation import InputError, first_line

MASK_MODES = ("P", "L")
VOID_LABEL = 255  # DAVIS marks pixels to ignore (object borders, unlabelled regions) with this value


class MaskFileError(InputError):
    """A mask file or folder is missing, unreadable, or inconsistent with what it should hold."""


def davis_palette() -> np.ndarray:
    """The DAVIS (PASCAL VOC) colormap as a (256, 3) uint8 array.

    The bits of the index are dealt out round-robin to red, green and blue, most significant colour
    bit first: index 1 -> (128, 0, 0), 2 -> (0, 128, 0), 3 -> (128, 128, 0), 4 -> (0, 0, 128), ...
    """
    index = np.arange(256)
    palette = np.zeros((256, 3), dtype=np.int64)
    for bit_group in range(8):
        for channel in range(3):
            bit = (index >> (3 * bit_group + channel)) & 1
            palette[:, channel] |= bit << (7 - bit_group)
    return palette.astype(np.uint8)


def read_mask(path: str | Path, grey: bool = False) -> np.ndarray:
    """The object-id map of a mode ``P`` or ``L`` PNG as an (H, W) uint8 array; with ``grey``, an
    image of any mode as grey levels (the salient-object masks of the static image sets).

    A missing, truncated or non-image file, or (without ``grey``) an image of another mode (RGB
    colours are not ids), raises :class:`MaskFileError` with a one-line message that starts with the path.
    """
    try:
        with Image.open(path) as image:
            if grey:
                return np.array(image.convert("L"), dtype=np.uint8)
            if image.mode not in MASK_MODES:
                raise MaskFileError(
                    f"{path}: image mode {image.mode!r} is not a label map (expected indexed 'P' or grayscale 'L')"
                )
            return np.array(image, dtype=np.uint8)
    except FileNotFoundError:
        raise MaskFileError(f"{path}: file not found") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as err:  # not an image, truncated, corrupt
        raise MaskFileError(f"{path}: not a readable image ({first_line(err)})") from None


def write_mask(path: str | Path, labels: np.ndarray, mode: str = "P") -> None:
    """Write an (H, W) integer map of object ids in [0, 255] as a PNG in mode ``P`` (DAVIS palette) or ``L``."""
    if mode not in MASK_MODES:
        raise ValueError(f"{path}: mask mode {mode!r} is not supported (expected one of {list(MASK_MODES)})")
    labels = np.asarray(labels)
    if labels.ndim != 2 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{path}: labels must be a 2-D integer array, got {labels.dtype} of shape {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() > 255):
        raise ValueError(f"{path}: object ids must lie in [0, 255], got [{labels.min()}, {labels.max()}]")
    image = Image.fromarray(labels.astype(np.uint8))
    if mode == "P":
        image.putpalette(davis_palette().tobytes())  # turns the L image into P, keeping the indices
    image.save(path, format="PNG", optimize=False, compress_level=6)
