"""Segmenting a video of one's own (``scripts/segment.py`` and ``s3.run.segment``), as a user would:
synthetic mp4 files and frame folders with coloured moving squares, palette PNG masks, random-weight
tiny models; in-process, through the composed config and the one-line error handler of the scripts."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from s3.config import compose, load_model_config
from s3.config.validation import InputWarning
from s3.data.palette import MaskFileError, read_mask, write_mask
from s3.run import load_processor
from s3.run.architectures import build_model
from s3.run.cli import run_job
from s3.run.segment import SegmentReport, read_index_mask, segment_from_config, segment_video

H, W, N = 48, 64, 8  # frame size and count of the synthetic videos
SQUARES = {1: ((0, 0, 255), 6), 2: ((255, 200, 0), 26)}  # object id -> (RGB colour, top row)


def frame_and_ids(t: int, objects: tuple[int, ...] = (1, 2)) -> tuple[np.ndarray, np.ndarray]:
    """Frame ``t`` (RGB) and its ids: each object a 14-pixel square moving right 3 pixels a frame."""
    image = np.full((H, W, 3), 60, np.uint8)
    ids = np.zeros((H, W), np.uint8)
    for obj in objects:
        colour, top = SQUARES[obj]
        left = 4 + 3 * t
        image[top : top + 14, left : left + 14] = colour
        ids[top : top + 14, left : left + 14] = obj
    return image, ids


def write_video(path: Path, frames: int = N) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 12, (W, H))
    assert writer.isOpened()
    for t in range(frames):
        writer.write(cv2.cvtColor(frame_and_ids(t)[0], cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def write_frame_folder(folder: Path, frames: int = N) -> Path:
    folder.mkdir(parents=True)
    for t in range(frames):
        Image.fromarray(frame_and_ids(t)[0]).save(folder / f"{t:05d}.png")
    return folder


def segment(*overrides: str) -> SegmentReport:
    """The job on ``configs/segment.yaml`` with ``overrides`` (s3_tiny, one thread, no progress bar)."""
    return segment_from_config(compose("segment", ["model=s3_tiny", "threads=1", "progress=false", *overrides]))


def video_frame_count(path: Path) -> int:
    capture = cv2.VideoCapture(str(path))
    count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    capture.release()
    return count


def test_a_video_file_with_an_object_that_joins_later(tmp_path: Path, one_thread: None) -> None:
    video, masks, out = write_video(tmp_path / "clip.mp4"), tmp_path / "masks", tmp_path / "out"
    masks.mkdir()
    first = frame_and_ids(0, objects=(1,))[1]
    late = frame_and_ids(3, objects=(2,))[1]
    write_mask(masks / "0000000.png", first)  # the frame names of a video file
    write_mask(masks / "3.png", late)  # a digits-only name: the frame of that number
    torch.manual_seed(0)
    weights = tmp_path / "tiny.pth"
    torch.save(build_model(load_model_config("s3_tiny")).state_dict(), weights)

    report = segment(f"video={video}", f"masks={masks}", f"out={out}", f"weights={weights}")

    written = sorted((out / "masks").glob("*.png"))
    assert [p.stem for p in written] == [f"{t:07d}" for t in range(N)] == report.frames
    for path in written:
        with Image.open(path) as png:
            assert png.mode == "P" and png.size == (W, H)
    predicted = [read_mask(p) for p in written]
    assert np.array_equal(predicted[0], first)  # a given mask is the answer on its frame
    assert all(2 not in np.unique(ids) for ids in predicted[:3])  # absent before its first mask
    assert np.all(predicted[3][late == 2] == 2)  # joins on its frame
    assert report.object_ids == [1, 2]
    assert video_frame_count(out / "overlay.mp4") == N and not (out / "overlay").exists()
    assert "random weights" not in report.format()


def test_backwards_from_a_middle_frame_of_a_folder_with_a_mask_of_another_size(
    tmp_path: Path, one_thread: None
) -> None:
    frames, out = write_frame_folder(tmp_path / "frames"), tmp_path / "out"
    ids = frame_and_ids(5)[1]
    ids[ids == 2] = 7  # ids are ids, not colours or ranks
    small = tmp_path / "small.png"
    write_mask(small, ids[::2, ::2])  # half the frame's size

    with pytest.warns(InputWarning, match=re.escape(f"{small}: mask is 32x24 but its frame is 64x48; resized")):
        report = segment(f"video={frames}", f"masks={small}", f"out={out}", "start=5", "reverse=true",
                         "save_overlays=true")

    assert report.frames == [f"{t:05d}" for t in range(5, -1, -1)]
    assert sorted(p.stem for p in (out / "masks").glob("*.png")) == [f"{t:05d}" for t in range(6)]
    expected = cv2.resize(ids[::2, ::2], (W, H), interpolation=cv2.INTER_NEAREST)
    assert np.array_equal(read_mask(out / "masks" / "00005.png"), expected)
    assert set(np.unique(expected)) == {0, 1, 7} and report.object_ids == [1, 7]
    assert sorted(p.stem for p in (out / "overlay").glob("*.jpg")) == [f"{t:05d}" for t in range(6)]
    assert video_frame_count(out / "overlay.mp4") == 6


@pytest.mark.parametrize("model", ["s3_tiny", "stma_tiny"])
def test_every_architecture_runs_through_the_registry(model: str, tmp_path: Path, one_thread: None) -> None:
    frames, out = write_frame_folder(tmp_path / "frames", frames=3), tmp_path / "out"
    write_mask(tmp_path / "first.png", frame_and_ids(0)[1])
    report = segment(f"model={model}", f"video={frames}", f"masks={tmp_path / 'first.png'}", f"out={out}")
    assert report.object_ids == [1, 2] and len(list((out / "masks").glob("*.png"))) == 3
    assert f"model={model}" in report.format() and "random weights" in report.format()


def test_the_python_entry_yields_masks_and_probabilities_and_starts_each_video_afresh(
    tmp_path: Path, one_thread: None
) -> None:
    frames = write_frame_folder(tmp_path / "frames", frames=5)
    torch.manual_seed(0)
    processor = load_processor("s3_tiny", device="cpu")
    given = {1: frame_and_ids(1)[1]}

    def run() -> list[tuple[int, str, np.ndarray, torch.Tensor]]:
        return [(f.index, f.name, f.id_mask(), f.prediction.probabilities)
                for f in segment_video(processor, frames, given, progress=False)]

    first = run()
    assert [(i, name) for i, name, _, _ in first] == [(t, f"{t:05d}") for t in range(1, 5)]
    assert all(ids.dtype == np.uint8 and ids.shape == (H, W) for _, _, ids, _ in first)
    assert np.array_equal(first[0][2], given[1]) and first[-1][3].shape == (3, H, W)
    second = run()  # the same processor again: its memory is cleared first
    assert all(torch.equal(a[3], b[3]) for a, b in zip(first, second))
    with pytest.warns(InputWarning, match=r"^masks: the masks of frames 00000 are not used: .* from frame 00001 forwards"):
        segment_video(processor, frames, {0: given[1], **given}, start=1)
    with pytest.raises(MaskFileError, match=r"masks\[1\]: object ids must lie in 0..255"):
        segment_video(processor, frames, {1: given[1].astype(np.int64) * 300})


def test_wide_index_images_are_read_when_their_ids_fit(tmp_path: Path) -> None:
    ids = np.zeros((6, 8), np.uint16)
    ids[1:3, 2:5] = 200
    Image.fromarray(ids).save(tmp_path / "wide.png")
    assert np.array_equal(read_index_mask(tmp_path / "wide.png"), ids.astype(np.uint8))
    ids[0, 0] = 300
    Image.fromarray(ids).save(tmp_path / "wide.png")
    with pytest.raises(MaskFileError, match=r"wide.png: object ids must lie in 0..255 .*found 0..300"):
        read_index_mask(tmp_path / "wide.png")


def _no_frames(tmp: Path) -> list[str]:
    (tmp / "empty").mkdir()
    return [f"video={tmp / 'empty'}", f"masks={_mask(tmp)}"]


def _unreadable_video(tmp: Path) -> list[str]:
    (tmp / "clip.mp4").write_bytes(b"not a video at all")
    return [f"video={tmp / 'clip.mp4'}", f"masks={_mask(tmp)}"]


def _rgb_mask(tmp: Path) -> list[str]:
    Image.fromarray(frame_and_ids(0)[0]).save(tmp / "colours.png")
    return [f"video={write_frame_folder(tmp / 'frames', 2)}", f"masks={tmp / 'colours.png'}"]


def _ids_beyond_255(tmp: Path) -> list[str]:
    Image.fromarray(frame_and_ids(0)[1].astype(np.uint16) * 150).save(tmp / "wide.png")
    return [f"video={write_frame_folder(tmp / 'frames', 2)}", f"masks={tmp / 'wide.png'}"]


def _start_without_mask(tmp: Path) -> list[str]:
    (tmp / "masks").mkdir()
    write_mask(tmp / "masks" / "00000.png", frame_and_ids(0)[1])
    return [f"video={write_frame_folder(tmp / 'frames', 3)}", f"masks={tmp / 'masks'}", "start=2"]


def _name_matches_no_frame(tmp: Path) -> list[str]:
    (tmp / "masks").mkdir()
    write_mask(tmp / "masks" / "00000.png", frame_and_ids(0)[1])
    write_mask(tmp / "masks" / "cat.png", frame_and_ids(0)[1])
    return [f"video={write_frame_folder(tmp / 'frames', 2)}", f"masks={tmp / 'masks'}"]


def _empty_masks(tmp: Path) -> list[str]:
    write_mask(tmp / "blank.png", np.zeros((H, W), np.uint8))
    return [f"video={write_frame_folder(tmp / 'frames', 2)}", f"masks={tmp / 'blank.png'}"]


def _mask(tmp: Path) -> Path:
    write_mask(tmp / "first.png", frame_and_ids(0)[1])
    return tmp / "first.png"


def _setting(*overrides: str) -> Callable[[Path], list[str]]:
    return lambda tmp: [f"video={write_frame_folder(tmp / 'frames', 2)}", f"masks={_mask(tmp)}", *overrides]


@pytest.mark.parametrize(
    ("make_inputs", "message"),
    [
        (_no_frames, r"empty: no image frames"),
        (_unreadable_video, r"clip.mp4: OpenCV cannot open this video"),
        (_rgb_mask, r"colours.png: image mode 'RGB' is not a label map"),
        (_ids_beyond_255, r"wide.png: object ids must lie in 0..255"),
        (_start_without_mask, r"start=2: frame 00002 has no mask in .*masks \(annotated: 00000\)"),
        (_name_matches_no_frame, r"cat.png: the name matches no frame of the video"),
        (_empty_masks, r"blank.png: no object in any mask"),
        (_setting("start=9"), r"start=9 is outside the video's frames 0..1"),
        (_setting("size=0"), r"size must be -1 \(native\) or > 0, got 0"),
        (_setting("inference.top_k=0"), r"inference.top_k must be > 0"),
        (_setting("+inference.max_internal_size=240"), r"inference.max_internal_size: .* top-level key size="),
        (lambda tmp: [f"masks={_mask(tmp)}"], r"video: a value is required"),
    ],
)
def test_unusable_inputs_end_in_one_line_naming_the_file_or_key(
    make_inputs: Callable[[Path], list[str]], message: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    overrides = make_inputs(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        run_job(lambda: segment(*overrides, f"out={tmp_path / 'out'}"))
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and re.search(message, err), err
    assert not (tmp_path / "out").exists()  # refused before anything is written
