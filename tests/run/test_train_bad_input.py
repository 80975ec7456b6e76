"""The training job (scripts/train.py: ``train_from_config`` under ``run_job``) ends every kind of bad
input in one ``error:`` line, never a traceback: crop sizes, empty masks (found in a DataLoader
worker), a broken mask file, an empty resume file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from s3.config import compose
from s3.data.palette import write_mask
from s3.run.cli import run_job
from s3.run.train import train_from_config

FRAMES, HEIGHT, WIDTH = 6, 64, 96


def make_videos(root: Path, empty: bool = False) -> None:
    """A DAVIS-layout set under ``root/synthetic`` (the ``synthetic`` data config): two short videos."""
    base = root / "synthetic"
    for video in ("a", "b"):
        for t in range(FRAMES):
            labels = np.zeros((HEIGHT, WIDTH), np.uint8)
            if not empty:
                labels[10:40, 5 + 4 * t : 40 + 4 * t] = 1
            image = np.full((HEIGHT, WIDTH, 3), 40, np.uint8)
            image[labels > 0] = (220, 90, 60)
            (base / "JPEGImages/480p" / video).mkdir(parents=True, exist_ok=True)
            (base / "Annotations/480p" / video).mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(base / "JPEGImages/480p" / video / f"{t:05d}.jpg")
            write_mask(base / "Annotations/480p" / video / f"{t:05d}.png", labels)
    (base / "ImageSets/2017").mkdir(parents=True, exist_ok=True)
    (base / "ImageSets/2017/train.txt").write_text("a\nb\n")


def train_args(root: Path, run_dir: Path, *extra: str) -> list[str]:
    return [
        "model=s3_tiny", "data=synthetic", "recipe=quickstart", f"data.root={root}", f"train.run_dir={run_dir}",
        "data.crop_size=64", "data.seq_length=3", "train.stages.0.num_iterations=1", "train.stages.0.batch_size=1",
        "train.num_workers=0", "train.device=cpu", "train.threads=1", "train.log_interval=1", *extra,
    ]


def one_line_error(args: list[str], capsys: pytest.CaptureFixture) -> str:
    with pytest.raises(SystemExit) as exit_info:
        run_job(lambda: train_from_config(compose("train", args)))
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: "), err
    return last


def test_a_crop_size_the_model_cannot_pad_is_named_before_training(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    make_videos(tmp_path / "data")
    line = one_line_error(train_args(tmp_path / "data", tmp_path / "run", "data.crop_size=100"), capsys)
    assert line == "error: data.crop_size=100 (stage main) is not a multiple of model.pad_multiple=32"


def test_empty_masks_found_in_a_loader_worker_end_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    make_videos(tmp_path / "data", empty=True)
    line = one_line_error(train_args(tmp_path / "data", tmp_path / "run", "train.num_workers=1"), capsys)
    assert line.startswith("error: no clip with an object in its first frame") and "are the masks empty?" in line


def test_a_broken_mask_file_is_named(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    make_videos(tmp_path / "data")
    for path in (tmp_path / "data/synthetic/Annotations/480p").rglob("*.png"):
        path.write_bytes(path.read_bytes()[:30])
    line = one_line_error(train_args(tmp_path / "data", tmp_path / "run"), capsys)
    assert line.startswith("error: ") and ".png: not a readable image" in line


def test_an_empty_resume_file_is_named(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    make_videos(tmp_path / "data")
    (tmp_path / "empty.pth").touch()
    line = one_line_error(train_args(tmp_path / "data", tmp_path / "run", f"train.resume={tmp_path / 'empty.pth'}"),
                          capsys)
    assert line == f"error: train.resume: {tmp_path / 'empty.pth'} is empty (0 bytes); an interrupted copy or save? " \
                   "use another file"
