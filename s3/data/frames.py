"""Frame files on disk: which suffixes count as images, the order of a video's files, and reading a
frame so that a broken file names itself.

Frame order: names compare piece by piece, runs of digits by their value, so ``2.jpg`` comes before
``10.jpg`` (zero-padded names, as in every benchmark, keep their text order).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from s3.config.validation import InputError, first_line

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
_DIGIT_RUNS = re.compile(r"(\d+)")


class FrameFileError(InputError):
    """A frame file or folder is missing, unreadable (truncated, not an image) or ambiguous."""


def frame_order_key(name: str) -> tuple:
    """Sort key of a file name: text pieces compare as text, digit runs by value, then the name itself."""
    pieces = _DIGIT_RUNS.split(name)  # text, digits, text, digits, ...: the same kind at each position
    return (*(int(p) if i % 2 else p for i, p in enumerate(pieces)), name)


def in_frame_order(paths: Iterable[Path]) -> list[Path]:
    """``paths`` sorted by their file names in frame order."""
    return sorted(paths, key=lambda p: frame_order_key(p.name))


def list_frames(folder: Path) -> list[Path]:
    """The image files of ``folder`` in frame order; two files of one frame name (``0.jpg``, ``0.png``)
    are an error."""
    frames = in_frame_order(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    stems = [p.stem for p in frames]
    repeated = sorted({s for s in stems if stems.count(s) > 1})
    if repeated:
        raise FrameFileError(f"{folder}: frame {repeated[0]} has more than one image file; keep one per frame")
    return frames


def read_rgb(path: Path) -> np.ndarray:
    """An image file as (H, W, 3) uint8 RGB, fully decoded (a truncated file is an error, never a
    partly grey frame)."""
    try:
        with Image.open(path) as image:
            return np.array(image.convert("RGB"))
    except FileNotFoundError:
        raise FrameFileError(f"{path}: frame file not found") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as err:  # not an image, truncated, corrupt
        raise FrameFileError(f"{path}: not a readable image ({first_line(err)})") from None
