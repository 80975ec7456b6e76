"""Clip sampling: curriculum switch points, gap bound, empty first frames, time reversal."""

from __future__ import annotations

import numpy as np
import pytest

from s3.data.sampling import dataset_max_skip, grow_frame_set, max_skip_at, sample_clip_frames

SCHEDULE = [5, 10, 15, 5]
SWITCHES = [0.0, 0.1, 0.3, 0.8]


@pytest.mark.parametrize(
    ("total", "expected"),
    [
        # 125k iterations: switches at 12,500 / 37,500 / 100,000
        (125_000, {0: 5, 12_499: 5, 12_500: 10, 37_499: 10, 37_500: 15, 99_999: 15, 100_000: 5, 124_999: 5}),
        # MEGA, 175k: 17,500 / 52,500 / 140,000
        (175_000, {17_499: 5, 17_500: 10, 52_499: 10, 52_500: 15, 139_999: 15, 140_000: 5}),
    ],
)
def test_curriculum_switches_at_rounded_fractions(total: int, expected: dict[int, int]) -> None:
    for iteration, skip in expected.items():
        assert max_skip_at(iteration, total, SCHEDULE, SWITCHES) == skip, iteration


def test_curriculum_rejects_mismatched_schedule() -> None:
    with pytest.raises(ValueError):
        max_skip_at(0, 100, [5, 10], [0.0])


def test_per_dataset_skip_divides_by_frame_interval() -> None:
    # DAVIS (2), YouTube-VOS/MOSE/BURST (5), OVIS (3) over the schedule 5, 10, 15, 5
    assert [dataset_max_skip(s, 2) for s in SCHEDULE] == [2, 5, 7, 2]
    assert [dataset_max_skip(s, 5) for s in SCHEDULE] == [1, 2, 3, 1]
    assert [dataset_max_skip(s, 3) for s in SCHEDULE] == [1, 3, 5, 1]
    assert dataset_max_skip(5, 10) == 1  # never below one stored frame


def test_grown_clips_keep_every_gap_within_max_skip() -> None:
    rng = np.random.default_rng(0)
    largest_gap, before_seed, after_seed = 0, 0, 0
    for _ in range(300):
        num_frames = int(rng.integers(8, 60))
        seed = int(rng.integers(num_frames))
        skip = int(rng.integers(1, 8))
        frames = grow_frame_set(num_frames, seed, 8, skip, rng)
        assert len(frames) == 8 and len(set(frames)) == 8
        assert frames == sorted(frames) and seed in frames
        assert 0 <= frames[0] and frames[-1] < num_frames
        gaps = np.diff(frames)
        assert gaps.max() <= skip, (frames, skip)
        largest_gap = max(largest_gap, int(gaps.max()))
        before_seed += frames[0] < seed
        after_seed += frames[-1] > seed
    assert largest_gap == 7  # gaps really reach max_skip (the sampler is not just taking neighbours)
    assert before_seed > 50 and after_seed > 50  # clips grow in both directions from the seed


def test_clip_uses_every_frame_of_a_short_video() -> None:
    assert grow_frame_set(8, 3, 8, 1, np.random.default_rng(1)) == list(range(8))


def test_first_frame_is_never_listed_empty_and_time_is_reversed_half_the_time() -> None:
    rng = np.random.default_rng(0)
    empty = frozenset(range(0, 40, 2))  # every even frame is empty
    reversed_count = 0
    for _ in range(400):
        seed = int(rng.integers(40))
        frames = sample_clip_frames(40, seed, 8, 3, rng, reverse_probability=0.5, empty_frames=empty)
        assert frames is not None and frames[0] not in empty
        assert sorted(frames) in (frames, frames[::-1])
        reversed_count += frames[0] > frames[-1]
    assert 140 < reversed_count < 260


def test_no_reversal_when_probability_is_zero() -> None:
    rng = np.random.default_rng(0)
    for _ in range(50):
        frames = sample_clip_frames(30, int(rng.integers(30)), 8, 4, rng, reverse_probability=0.0)
        assert frames == sorted(frames)


def test_gives_up_when_every_frame_is_empty() -> None:
    rng = np.random.default_rng(0)
    assert sample_clip_frames(10, 0, 8, 2, rng, empty_frames=frozenset(range(10)), attempts=5) is None
