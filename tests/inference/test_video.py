"""Frame sources (image folders, video files) and forward / reverse propagation."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from s3.config.inference import InferenceConfig
from s3.inference.processor import VideoProcessor
from s3.inference.video import ImageFolder, VideoFile, open_frames, propagate, propagation_order

H, W, N = 32, 48, 8


def synthetic_frames() -> list[np.ndarray]:
    """Frame t: a flat colour whose red channel encodes t (survives JPEG and mp4 coding)."""
    return [np.full((H, W, 3), (20 + 25 * t, 90, 160), np.uint8) for t in range(N)]


def box_mask(obj: int, top: int = 4, left: int = 4) -> np.ndarray:
    mask = np.zeros((H, W), np.int64)
    mask[top : top + 10, left : left + 12] = obj
    return mask


@pytest.fixture
def frame_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "frames"
    folder.mkdir()
    for t, frame in enumerate(synthetic_frames()):
        cv2.imwrite(str(folder / f"{t:05d}.jpg"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    (folder / "notes.txt").write_text("not a frame")
    return folder


def test_image_folder_is_sorted_and_rgb(frame_folder: Path) -> None:
    frames = open_frames(frame_folder)
    assert isinstance(frames, ImageFolder) and len(frames) == N
    assert frames.names == [f"{t:05d}" for t in range(N)]
    for t in (0, 5):
        assert abs(int(frames[t][..., 0].mean()) - (20 + 25 * t)) <= 2  # red channel first
        assert abs(int(frames[t][..., 2].mean()) - 160) <= 2


def test_video_file_reads_in_order_and_with_seeks(tmp_path: Path) -> None:
    path = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (W, H))
    assert writer.isOpened()
    for frame in synthetic_frames():
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    video = open_frames(path)
    assert isinstance(video, VideoFile) and len(video) == N and video.names[3] == "0000003"
    for t in (0, 1, 6, 2, 7):  # forward reads and backward seeks
        assert abs(int(video[t][..., 0].mean()) - (20 + 25 * t)) <= 6, t
    with pytest.raises(IndexError, match="out of range"):
        video[N]
    with pytest.raises(ValueError, match="no such"):
        open_frames(tmp_path / "missing.mp4")


def test_propagation_order() -> None:
    assert propagation_order(6, 2, None, reverse=False) == [2, 3, 4, 5]
    assert propagation_order(6, 4, None, reverse=True) == [4, 3, 2, 1, 0]
    assert propagation_order(6, 4, 2, reverse=True) == [4, 3, 2]
    with pytest.raises(ValueError, match="not before"):
        propagation_order(6, 2, 4, reverse=True)


def test_forward_propagation_from_a_middle_frame(network, frame_folder: Path) -> None:
    frames = open_frames(frame_folder)
    masks = {2: box_mask(7), 5: box_mask(11, top=18, left=30)}
    results = list(propagate(VideoProcessor(network, InferenceConfig()), frames, masks, progress=False))
    assert [i for i, _ in results] == list(range(2, N))
    first = results[0][1]
    assert first.object_ids == [7] and torch.equal(first.id_mask(), torch.from_numpy(masks[2]))
    assert results[2][1].object_ids == [7]
    assert results[3][1].object_ids == [7, 11]  # the mask met at frame 5 adds object 11
    assert torch.all(results[3][1].id_mask()[torch.from_numpy(masks[5]) == 11] == 11)
    assert not results[-1][1].memorised  # the last frame is never memorised


def test_reverse_propagation(network, frame_folder: Path) -> None:
    frames = open_frames(frame_folder)
    masks = {1: box_mask(4), 5: box_mask(9)}
    results = list(propagate(VideoProcessor(network, InferenceConfig()), frames, masks, reverse=True, progress=False))
    assert [i for i, _ in results] == [5, 4, 3, 2, 1, 0]
    assert torch.equal(results[0][1].id_mask(), torch.from_numpy(masks[5]))
    assert results[4][1].object_ids == [9, 4]
    partial = list(propagate(VideoProcessor(network, InferenceConfig()), frames, masks, start=5, stop=3, reverse=True, progress=False))
    assert [i for i, _ in partial] == [5, 4, 3]
    with pytest.raises(ValueError, match="has no mask"):
        next(propagate(VideoProcessor(network, InferenceConfig()), frames, masks, start=4, progress=False))
