"""The quickstart pipeline end to end on a very small synthetic set (quality is measured by
running scripts/quickstart.py itself; the README gives the figures)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from s3.config import compose
from s3.config.jobs import QuickstartConfig
from s3.config.synthetic import SplitSizes, SyntheticConfig
from s3.data.palette import read_mask
from s3.run.evaluate import evaluate_from_config
from s3.run.quickstart import copy_first_frame_baseline, run_quickstart


def test_quickstart_generates_trains_evaluates_and_scores_the_baseline(tmp_path: Path) -> None:
    threads = torch.get_num_threads()
    synthetic = SyntheticConfig(num_videos=SplitSizes(train=2, val=2), num_frames=[8, 8], frame_size=[128, 160])
    cfg = QuickstartConfig(
        data_root=str(tmp_path / "data"),
        output_dir=str(tmp_path / "out"),
        iterations=2,
        threads=1,
        synthetic=synthetic,
    )
    report = run_quickstart(cfg)
    assert torch.get_num_threads() == threads  # the jobs' runtimes restore the process settings
    out = tmp_path / "out"
    assert report.weights == out / "train" / "weights" / "main.pth" and report.weights.is_file()
    assert 0.0 <= report.model_jf <= 1.0 and 0.0 <= report.baseline_jf <= 1.0
    videos = (tmp_path / "data/synthetic/ImageSets/2017/val.txt").read_text().split()
    with zipfile.ZipFile(out / "eval" / "quickstart_synthetic.zip") as archive:
        names = archive.namelist()
    assert sorted({n.split("/")[0] for n in names}) == sorted(videos)  # sequence folders at the root
    assert all((out / "eval" / f"{v}.mp4").is_file() or any((out / "eval").rglob(f"{v}.mp4")) for v in videos)
    assert (out / "eval" / "global_results-synthetic.csv").is_file()
    assert "copy-first-frame baseline" in report.format()

    # resuming does nothing new and gives the same scores
    again = run_quickstart(cfg)
    assert again.model_jf == report.model_jf and again.baseline_jf == report.baseline_jf


def test_copy_first_frame_baseline_repeats_the_first_mask(tmp_path: Path) -> None:
    from s3.data.synthetic import generate_dataset

    root = tmp_path / "synthetic"
    generate_dataset(root, SyntheticConfig(num_videos=SplitSizes(train=0, val=1), num_frames=[8, 8], frame_size=[64, 96]), progress=False)
    video = (root / "ImageSets/2017/val.txt").read_text().split()[0]
    copy_first_frame_baseline(root / "JPEGImages/480p", root / "Annotations/480p", [video], tmp_path / "pred")
    predicted = sorted((tmp_path / "pred" / video).glob("*.png"))
    truth = sorted((root / "Annotations/480p" / video).glob("*.png"))
    assert [p.name for p in predicted] == [p.name for p in truth]
    first = read_mask(truth[0])
    assert all(np.array_equal(read_mask(p), first) for p in predicted)
    assert not all(np.array_equal(read_mask(t), first) for t in truth)  # the objects do move


@pytest.mark.slow
def test_quickstart_defaults_really_learn(tmp_path: Path) -> None:
    """The README's claim: J&F >= 65 on the synthetic val videos (69.1 on the AVX2 machine of 2026-12-07;
    other training seeds land between 50 and 69, see the README) and at least 15 points above copying
    the first-frame mask; in bf16 the same weights score within 0.5 J&F of fp32."""
    report = run_quickstart(QuickstartConfig(data_root=str(tmp_path / "data"), output_dir=str(tmp_path / "out")))
    assert report.model_jf >= 0.65
    assert report.model_jf >= report.baseline_jf + 0.15
    assert report.baseline_jf < 0.5

    # the same trained weights in bf16 (inference.precision): J&F within 0.5 of fp32
    bf16, _ = evaluate_from_config(
        compose(
            "eval",
            [
                "model=s3_tiny",
                "dataset=synthetic",
                f"dataset.root={tmp_path / 'data' / 'synthetic'}",
                f"weights={report.weights}",
                f"output_dir={tmp_path / 'bf16'}",
                "visualize=false",
                "inference.precision=bf16",
            ],
        )
    )
    assert bf16.global_metrics is not None
    assert abs(bf16.global_metrics["J&F-Mean"] - report.model_jf) <= 0.005


@pytest.mark.slow
def test_stma_quickstart_really_learns(tmp_path: Path) -> None:
    """The README's STMA claim (``scripts/quickstart.py model=stma_tiny``, at most 15 minutes on 2 CPU
    cores): J&F >= 50 on the synthetic val videos (56.0 on the AVX2 machine of 2026-12-07, 66.4 before a
    rounding-level change of the augmentation: runs this short are a lottery, see the README) and at
    least 15 points above copying the first mask."""
    report = run_quickstart(
        QuickstartConfig(model="stma_tiny", data_root=str(tmp_path / "data"), output_dir=str(tmp_path / "out"))
    )
    assert report.model == "stma_tiny"
    assert report.model_jf >= 0.50
    assert report.model_jf >= report.baseline_jf + 0.15
    assert report.baseline_jf < 0.5
