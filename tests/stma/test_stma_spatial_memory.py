"""SpatialMemory: FIFO within the capacity, first appearances and permanent frames pinned, masks of
objects added or removed later, clearing."""

from __future__ import annotations

import pytest
import torch

from s3.stma.spatial_memory import SpatialMemory

L, C, H, W = 6, 4, 8, 8


def tokens(frame: int) -> torch.Tensor:
    """(V=1, L, C) tokens that name their frame."""
    return torch.full((1, L, C), float(frame))


def masks(*ids: int) -> torch.Tensor:
    """(1, K, H, W) masks whose value names the object."""
    return torch.stack([torch.full((H, W), float(o)) for o in ids]).unsqueeze(0)


def frames_in(memory: SpatialMemory) -> list[int]:
    return [int(f.tokens[0, 0, 0]) for f in memory.frames]


def test_fifo_keeps_the_first_appearance_and_the_latest_frames() -> None:
    memory = SpatialMemory(capacity=3)
    memory.add(tokens(0), None, [1, 2], first_appearance_of=[1, 2])
    for frame in range(1, 6):
        memory.add(tokens(frame), None, [1, 2])
        assert len(memory) == min(frame + 1, 3)
    assert frames_in(memory) == [0, 4, 5]
    read, read_masks = memory.read([1, 2])
    assert read.shape == (1, 3, L, C) and read_masks is None
    assert read[0, :, 0, 0].tolist() == [0.0, 4.0, 5.0]  # oldest first


def test_every_first_appearance_is_pinned_and_pins_may_exceed_the_capacity() -> None:
    memory = SpatialMemory(capacity=3)
    memory.add(tokens(0), None, [1], first_appearance_of=[1])
    memory.add(tokens(1), None, [1])
    memory.add(tokens(2), None, [1, 2], first_appearance_of=[2])
    memory.add(tokens(3), None, [1, 2])
    assert frames_in(memory) == [0, 2, 3]  # frame 1 left, the two first appearances stay
    memory.add(tokens(4), None, [1, 2, 3], first_appearance_of=[3])
    assert frames_in(memory) == [0, 2, 4]
    memory.add(tokens(5), None, [1, 2, 3, 4], first_appearance_of=[4])
    assert frames_in(memory) == [0, 2, 4, 5]  # only pinned frames, one more than the capacity
    memory.add(tokens(6), None, [1, 2, 3, 4])
    assert frames_in(memory) == [0, 2, 4, 5]  # an unpinned frame cannot get in


def test_removing_an_object_unpins_its_first_appearance() -> None:
    memory = SpatialMemory(capacity=2)
    memory.add(tokens(0), masks(1), [1], first_appearance_of=[1])
    memory.add(tokens(1), masks(1, 2), [1, 2], first_appearance_of=[2])
    memory.add(tokens(2), masks(1, 2), [1, 2])
    assert frames_in(memory) == [0, 1]
    memory.remove_objects([2])
    assert frames_in(memory) == [0, 1] and memory.frames[1].object_ids == [1]
    memory.add(tokens(3), masks(1), [1])
    assert frames_in(memory) == [0, 3]  # frame 1 is an ordinary FIFO frame now
    memory.remove_objects([1])
    assert frames_in(memory) == [0, 3] and not any(f.pinned for f in memory.frames)


def test_masks_follow_the_objects_asked_for() -> None:
    memory = SpatialMemory(capacity=3)
    memory.add(tokens(0), masks(5), [5], first_appearance_of=[5])
    memory.add(tokens(1), masks(5, 9), [5, 9], first_appearance_of=[9])
    _, read = memory.read([9, 5])
    assert read.shape == (1, 2, 2, H, W)
    assert read[0, :, :, 0, 0].tolist() == [[0.0, 5.0], [9.0, 5.0]]  # object 9 had no mask in frame 0
    assert memory.read([])[1].shape == (1, 2, 0, H, W)


def test_permanent_frames_stay_and_clearing_keeps_the_pinned_frames() -> None:
    memory = SpatialMemory(capacity=2)
    memory.add(tokens(0), None, [1], first_appearance_of=[1])
    memory.add(tokens(1), None, [1], permanent=True)
    memory.add(tokens(2), None, [1])
    assert frames_in(memory) == [0, 1]
    memory = SpatialMemory(capacity=3)
    memory.add(tokens(0), None, [1], first_appearance_of=[1])
    memory.add(tokens(1), None, [1])
    memory.add(tokens(2), None, [1])
    memory.clear_non_permanent()
    assert frames_in(memory) == [0]


def test_bad_writes_fail_with_a_message() -> None:
    with pytest.raises(ValueError, match="capacity must be >= 1"):
        SpatialMemory(0)
    memory = SpatialMemory(2)
    with pytest.raises(ValueError, match="2 masks for 1 object ids"):
        memory.add(tokens(0), masks(1, 2), [1])
    with pytest.raises(ValueError, match="the memory is empty"):
        memory.read([1])
    memory.add(tokens(0), None, [1])
    with pytest.raises(ValueError, match=r"tokens \(1, 3, 4\) differ"):
        memory.add(torch.zeros(1, 3, C), None, [1])
