"""COCO run-length encoding of binary masks, in pure numpy.

A COCO RLE is ``{"size": [h, w], "counts": ...}``. The runs alternate background / foreground,
start with a (possibly zero-length) background run, and walk the mask in column-major order
(down each column, then to the next column). ``counts`` is either the list of run lengths
("uncompressed" RLE) or the compact ASCII string used by COCO, BURST and LVIS JSON files:

* from the third run on, each run is stored as its difference to the run two places earlier;
* each (signed) number is written in 5-bit groups, least significant first; bit 0x20 of a group
  says another group follows, bit 0x10 of the last group is the sign; every group is stored as the
  character ``chr(group + 48)``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

_GROUP_BITS = 5
_VALUE_MASK = 0x1F
_SIGN_BIT = 0x10
_MORE_BIT = 0x20
_CHAR_OFFSET = 48


def _runs_to_string(runs: list[int]) -> str:
    """Run lengths -> COCO's compressed counts string."""
    chars: list[str] = []
    for i, run in enumerate(runs):
        value = run - runs[i - 2] if i > 2 else run
        more = True
        while more:
            group = value & _VALUE_MASK
            value >>= _GROUP_BITS  # arithmetic shift: negative numbers converge to -1
            more = value != -1 if group & _SIGN_BIT else value != 0
            chars.append(chr((group | _MORE_BIT if more else group) + _CHAR_OFFSET))
    return "".join(chars)


def _string_to_runs(text: str) -> list[int]:
    """COCO's compressed counts string -> run lengths."""
    runs: list[int] = []
    position = 0
    while position < len(text):
        value, shift, more = 0, 0, True
        while more:
            if position >= len(text):
                raise ValueError(f"RLE counts string ends inside a number: {text!r}")
            group = ord(text[position]) - _CHAR_OFFSET
            if not 0 <= group < 2 * _MORE_BIT:
                raise ValueError(f"RLE counts string has an invalid character {text[position]!r}")
            value |= (group & _VALUE_MASK) << shift
            shift += _GROUP_BITS
            more = bool(group & _MORE_BIT)
            position += 1
            if not more and group & _SIGN_BIT:
                value -= 1 << shift
        if len(runs) > 2:
            value += runs[-2]
        runs.append(value)
    return runs


def rle_decode(rle: dict[str, Any]) -> np.ndarray:
    """Decode a COCO RLE (compressed string/bytes or uncompressed list counts) to a bool (H, W) mask."""
    try:
        height, width = (int(v) for v in rle["size"])
        counts = rle["counts"]
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"not a COCO RLE (needs 'size': [h, w] and 'counts'): {err}") from err
    if isinstance(counts, bytes):
        counts = counts.decode("ascii")
    runs = _string_to_runs(counts) if isinstance(counts, str) else [int(c) for c in counts]
    if any(r < 0 for r in runs) or sum(runs) != height * width:
        raise ValueError(f"RLE runs sum to {sum(runs)} (negative runs: {any(r < 0 for r in runs)}), "
                         f"expected {height}x{width}={height * width}")
    values = np.zeros(len(runs), dtype=bool)
    values[1::2] = True
    flat = np.repeat(values, runs)
    return flat.reshape(width, height).T.copy()


def rle_encode(mask: np.ndarray) -> dict[str, Any]:
    """Encode a 2-D mask (nonzero = foreground) as ``{"size": [h, w], "counts": <COCO string>}``."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"rle_encode expects a 2-D mask, got shape {mask.shape}")
    height, width = mask.shape
    flat = (mask != 0).T.reshape(-1)
    change_points = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    boundaries = np.concatenate(([0], change_points, [flat.size]))
    runs = np.diff(boundaries).tolist()
    if flat.size and flat[0]:
        runs.insert(0, 0)  # runs always start with background
    return {"size": [height, width], "counts": _runs_to_string(runs)}
