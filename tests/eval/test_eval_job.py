"""The evaluation job (``scripts/eval.py``) end to end on a tiny DAVIS-layout set with a
random-weight s3_tiny, then the score-merging job (``scripts/merge_scores.py``) on two of its runs;
in-process, through the same composed configs and the same one-line error handler as the scripts."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from tiny_datasets import HEIGHT, WIDTH, make_davis

from s3.config import compose, load_model_config
from s3.data.palette import read_mask
from s3.model.build import build_network
from s3.run.cli import run_job
from s3.run.evaluate import SUMMARY_FILE, evaluate_from_config
from s3.run.scores import compare_from_config, merge_scores_from_config

VIDEOS = {"bear": 5, "cows": 4}


def evaluate(*overrides: str) -> str:
    """The evaluation job on ``configs/eval.yaml`` with ``overrides``; returns what the script prints."""
    report, prints = evaluate_from_config(compose("eval", overrides))
    assert prints
    return report.format()


def test_eval_script_writes_predictions_scores_and_visualisations(tmp_path: Path) -> None:
    root, out = tmp_path / "davis", tmp_path / "run"
    make_davis(root, VIDEOS)
    torch.manual_seed(0)
    weights = tmp_path / "tiny.pth"
    torch.save(build_network(load_model_config("s3_tiny")).state_dict(), weights)
    args = ["model=s3_tiny", "dataset=synthetic", f"dataset.root={root}", f"output_dir={out}", f"weights={weights}",
            "visualize=true", "save_scores=true", "threads=1", "progress=false"]
    printed = evaluate(*args)

    for video, frames in VIDEOS.items():
        written = sorted((out / "Annotations" / video).glob("*.png"))
        assert [p.stem for p in written] == [f"{t:05d}" for t in range(frames)]
        with Image.open(written[-1]) as png:
            assert png.mode == "P" and png.size == (WIDTH, HEIGHT)
        assert np.array_equal(read_mask(written[0]), read_mask(root / "Annotations/480p" / video / "00000.png"))
        assert len(list((out / "Scores" / video).glob("*.npz"))) == frames
        assert len(list((out / "Visualizations" / video).glob("*.jpg"))) == frames
        capture = cv2.VideoCapture(str(out / "Visualizations" / f"{video}.mp4"))
        assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == frames
        capture.release()
    assert "model-only FPS" in printed and "end-to-end FPS" in printed and "peak memory" in printed
    assert "J&F-Mean" in printed
    assert (out / "global_results-synthetic.csv").is_file() and (out / "per-sequence_results-synthetic.csv").is_file()
    assert "random weights" not in printed
    summary = json.loads((out / SUMMARY_FILE).read_text())
    assert summary["frames"] == sum(VIDEOS.values()) and summary["model_fps"] > 0
    page = (out / "report.html").read_text()
    assert all(f">{video}<" in page for video in VIDEOS) and "Visualizations/bear.mp4" in page

    # a second run (other memory schedule), then merge the two runs' scores into a test-dev style zip
    second = tmp_path / "run_b"
    evaluate(*[a for a in args if not a.startswith(("output_dir", "visualize"))], f"output_dir={second}",
             "mem_every=2", "score=false")
    merged = tmp_path / "merged"
    merge_scores_from_config(
        compose("merge_scores", [f"runs=[{out},{second}]", f"output_dir={merged}", "layout=sequences_at_root"])
    )
    with zipfile.ZipFile(merged / "merged.zip") as archive:
        names = sorted(archive.namelist())
    assert names == sorted(f"{v}/{t:05d}.png" for v, n in VIDEOS.items() for t in range(n))
    # the two runs side by side on one page; a run that was not scored is refused in one line
    evaluate(*[a for a in args if not a.startswith(("output_dir", "visualize", "save_scores"))],
             f"output_dir={tmp_path / 'run_c'}", "mem_every=2")
    page = compare_from_config(compose("compare", [f"runs=[{out},{tmp_path / 'run_c'}]", f"out={tmp_path / 'c.html'}"]))
    assert page.is_file() and all(video in page.read_text() for video in VIDEOS)
    with pytest.raises(SystemExit):
        run_job(lambda: compare_from_config(compose("compare", [f"runs=[{out},{second}]", f"out={tmp_path / 'x.html'}"])))
    # the first frame is the given mask in both runs, so the merge keeps it
    assert np.array_equal(read_mask(merged / "Annotations/bear/00000.png"), read_mask(out / "Annotations/bear/00000.png"))


def test_eval_job_refuses_ground_truth_feeding_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    cfg = compose("eval", ["model=s3_tiny", "dataset=davis17", "use_all_masks=true", f"output_dir={tmp_path}"])
    with pytest.raises(SystemExit) as exit_info:
        run_job(lambda: evaluate_from_config(cfg))
    assert exit_info.value.code == 1
    stderr = capsys.readouterr().err
    assert stderr.startswith("error: use_all_masks=true on dataset davis17") and stderr.count("\n") == 1
