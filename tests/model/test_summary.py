"""The model summary table and the inference-step timer."""

from __future__ import annotations

import subprocess
import sys

import torch
from conftest import REPO_ROOT

from s3.config import load_model_config
from s3.model.benchmark import time_inference_step
from s3.model.network import S3Network
from s3.model.summary import summarize


def test_summary_counts_every_parameter_once_and_records_shapes() -> None:
    torch.manual_seed(0)
    net = S3Network(load_model_config("s3_tiny"))
    summary = summarize(net, (70, 100), num_objects=2)
    assert summary.trainable == sum(p.numel() for p in net.parameters() if p.requires_grad)
    assert summary.frozen == sum(p.numel() for p in net.parameters() if not p.requires_grad) > 0
    rows = {r.name: r for r in summary.rows}
    assert rows["pixel_encoder.vit"].trainable == 0 and rows["pixel_encoder"].frozen == 0
    assert summary.padded_size == (96, 128)
    assert rows["mask_decoder"].output_shapes == ["(1, 2, 32, 6, 8)", "(1, 2, 24, 32)"]
    assert all(r.output_shapes for r in summary.rows)
    text = summary.format()
    assert f"{summary.trainable:,}" in text and "padded to 96x128" in text


def test_model_summary_script_prints_the_table() -> None:
    result = subprocess.run(
        [sys.executable, "scripts/model_summary.py", "model=s3_tiny", "frame_size=[64,96]", "num_objects=3"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "model=s3_tiny" in result.stdout
    assert "object_transformer" in result.stdout and "total" in result.stdout
    assert "(1, 3, 4, 6)" in result.stdout  # aux logits of 3 objects on the 4x6 grid


def test_model_summary_script_rejects_a_bad_switch_in_one_line() -> None:
    result = subprocess.run(
        [sys.executable, "scripts/model_summary.py", "model=s3_tiny", "model.query.read=attention"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode != 0
    assert "model.query.read='attention' is not one of ['discriminative', 'cutie']" in result.stderr


def test_inference_step_timer() -> None:
    net = S3Network(load_model_config("s3_tiny"))
    timing = time_inference_step(net, (64, 96), num_objects=2, repeats=2, warmup=1)
    assert len(timing.seconds) == 2 and all(s > 0 for s in timing.seconds)
    assert timing.fps == 1 / timing.median and timing.peak_memory_mib is None
