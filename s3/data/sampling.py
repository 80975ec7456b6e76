"""Which frames of a video make a training clip, and the max-skip curriculum.

A clip grows from a seed frame: every further frame is drawn uniformly among the unused frames
within ``max_skip`` of *any* frame already chosen, so once sorted no two neighbouring clip frames are
more than ``max_skip`` stored frames apart (a new frame lands within ``max_skip`` of an existing one,
which can only split a gap or open one of at most ``max_skip`` at an end). The clip is then sorted,
played backwards with some probability, and rejected if its first frame is known to be empty.

``max_skip`` is measured in dense (DAVIS-like) frames; a dataset whose stored frames are
``frame_interval`` source frames apart uses ``max_skip // frame_interval`` stored frames.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import AbstractSet, Optional

import numpy as np

CLIP_DRAWS_PER_SEED = 100


def max_skip_at(
    iteration: int, total_iterations: int, schedule: Sequence[int], switch_fractions: Sequence[float]
) -> int:
    """The curriculum max skip in force at ``iteration`` (0-based).

    ``schedule[i]`` applies from iteration ``round(total_iterations * switch_fractions[i])`` on; with
    the default [5, 10, 15, 5] at [0, 0.1, 0.3, 0.8] of 125k iterations the switches are at
    0 / 12,500 / 37,500 / 100,000.
    """
    if len(schedule) != len(switch_fractions) or not schedule:
        raise ValueError(f"max-skip schedule {list(schedule)} and switch fractions {list(switch_fractions)} "
                         "must be non-empty and of equal length")
    skip = schedule[0]
    for value, fraction in zip(schedule, switch_fractions):
        if iteration >= round(total_iterations * fraction):
            skip = value
    return int(skip)


def dataset_max_skip(max_skip: int, frame_interval: int) -> int:
    """The max skip in stored frames of a dataset whose stored frames are ``frame_interval`` apart (>= 1)."""
    return max(1, max_skip // frame_interval)


def grow_frame_set(num_frames: int, seed_frame: int, length: int, max_skip: int, rng: np.random.Generator) -> list[int]:
    """``length`` distinct frame indices, grown from ``seed_frame``, sorted ascending.

    Each new frame is drawn uniformly from the unused frames within ``max_skip`` of any chosen frame.
    """
    if not 0 <= seed_frame < num_frames or length > num_frames or max_skip < 1:
        raise ValueError(f"cannot grow {length} frames from frame {seed_frame} of {num_frames} "
                         f"with max skip {max_skip}")
    chosen = {seed_frame}
    candidates: set[int] = set()

    def open_window(frame: int) -> None:
        window = range(max(0, frame - max_skip), min(num_frames, frame + max_skip + 1))
        candidates.update(f for f in window if f not in chosen)

    open_window(seed_frame)
    while len(chosen) < length:
        pool = sorted(candidates)
        frame = pool[int(rng.integers(len(pool)))]
        chosen.add(frame)
        candidates.discard(frame)
        open_window(frame)
    return sorted(chosen)


def sample_clip_frames(
    num_frames: int,
    seed_frame: int,
    length: int,
    max_skip: int,
    rng: np.random.Generator,
    reverse_probability: float = 0.5,
    empty_frames: AbstractSet[int] = frozenset(),
    attempts: int = CLIP_DRAWS_PER_SEED,
) -> Optional[list[int]]:
    """Frame indices of one clip in playing order, or None if every attempt started on an empty frame."""
    for _ in range(attempts):
        frames = grow_frame_set(num_frames, seed_frame, length, max_skip, rng)
        if rng.random() < reverse_probability:
            frames.reverse()
        if frames[0] not in empty_frames:
            return frames
    return None
