"""BURST JSON -> VOS folders: decoded track masks, folder names, annotated frames only."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from s3.config.data import VideoDatasetConfig
from s3.data.build import read_video_records
from s3.data.burst_to_vos import burst_video_name, convert_burst, split_burst_video_name
from s3.data.palette import read_mask
from s3.data.rle import rle_encode

HEIGHT, WIDTH = 30, 40


def track_masks(frame: int) -> dict[int, np.ndarray]:
    """Track 1 (a moving box) on frames 0 and 2, track 3 on frames >= 1; they overlap on frame 2."""
    moving = np.zeros((HEIGHT, WIDTH), dtype=bool)
    moving[5:15, 2 + 4 * frame : 12 + 4 * frame] = True
    still = np.zeros((HEIGHT, WIDTH), dtype=bool)
    still[10:25, 10:30] = True
    tracks = {1: moving} if frame in (0, 2) else {}
    if frame >= 1:
        tracks[3] = still
    return tracks


def write_burst(root: Path) -> Path:
    """A BURST-like split: frames for two sequences, of which frames 0, 2, 4 of the first are annotated."""
    frames = [f"frame{i:04d}.jpg" for i in range(6)]
    sequences = []
    for dataset, seq_name, annotated in (("ArgoVerse", "seq-a", [0, 2, 4]), ("YFCC100M", "v_b", [1])):
        folder = root / "frames" / "train" / dataset / seq_name
        folder.mkdir(parents=True)
        for i, name in enumerate(frames):
            Image.fromarray(np.full((HEIGHT, WIDTH, 3), 20 * i, dtype=np.uint8)).save(folder / name)
        sequences.append({
            "dataset": dataset, "seq_name": seq_name, "width": WIDTH, "height": HEIGHT,
            "all_image_paths": frames,
            "annotated_image_paths": [frames[i] for i in annotated],
            "segmentations": [
                {str(track): {"rle": rle_encode(mask)["counts"], "is_gt": True}
                 for track, mask in track_masks(i).items()}
                for i in annotated
            ],
        })
    path = root / "train.json"
    path.write_text(json.dumps({"split": "train", "sequences": sequences}))
    return path


def test_conversion_writes_track_ids_for_annotated_frames(tmp_path: Path) -> None:
    annotations = write_burst(tmp_path)
    output = tmp_path / "train-vos"
    videos = convert_burst(annotations, tmp_path / "frames" / "train", output, show_progress=False)
    assert videos == ["ArgoVerse_-_seq-a", "YFCC100M_-_v_b"]
    assert sorted(p.name for p in (output / "JPEGImages" / videos[0]).iterdir()) == [
        "frame0000.jpg", "frame0002.jpg", "frame0004.jpg"]
    for frame in (0, 2, 4):
        labels = read_mask(output / "Annotations" / videos[0] / f"frame{frame:04d}.png")
        expected = np.zeros((HEIGHT, WIDTH), dtype=np.uint8)
        for track, mask in sorted(track_masks(frame).items()):
            expected[mask] = track  # the larger id wins where tracks overlap
        np.testing.assert_array_equal(labels, expected)
    copied = np.asarray(Image.open(output / "JPEGImages" / videos[0] / "frame0004.jpg"))
    assert abs(int(copied.mean()) - 80) <= 2  # the source frame itself, not another one


def test_converted_folders_are_read_by_the_folder_reader(tmp_path: Path) -> None:
    output = tmp_path / "train-vos"
    convert_burst(write_burst(tmp_path), tmp_path / "frames" / "train", output, show_progress=False)
    videos = read_video_records("burst", VideoDatasetConfig(root=str(output)))
    assert [(v.name, v.frames) for v in videos] == [
        ("ArgoVerse_-_seq-a", ("frame0000", "frame0002", "frame0004")),
        ("YFCC100M_-_v_b", ("frame0001",)),
    ]


def test_video_names_round_trip() -> None:
    assert split_burst_video_name(burst_video_name("LaSOT", "cat-1")) == ("LaSOT", "cat-1")
    with pytest.raises(ValueError):
        split_burst_video_name("no-separator")


def test_bad_annotations_name_the_file_and_sequence(tmp_path: Path) -> None:
    annotations = write_burst(tmp_path)
    content = json.loads(annotations.read_text())
    content["sequences"][1]["segmentations"][0] = {"300": content["sequences"][1]["segmentations"][0]["3"]}
    annotations.write_text(json.dumps(content))
    with pytest.raises(ValueError, match=r"train\.json: sequence 1: .*track id 300"):
        convert_burst(annotations, tmp_path / "frames" / "train", tmp_path / "out", show_progress=False)
    (tmp_path / "frames" / "train" / "ArgoVerse" / "seq-a" / "frame0002.jpg").unlink()
    with pytest.raises(FileNotFoundError, match="frame0002.jpg"):
        convert_burst(annotations, tmp_path / "frames" / "train", tmp_path / "out", show_progress=False)
