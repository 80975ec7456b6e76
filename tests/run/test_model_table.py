"""The model-table job (``scripts/model_summary.py``); the benchmark job is in test_benchmark.py."""

from __future__ import annotations

import pytest
import torch

from s3.config import compose, load_model_config
from s3.model.network import S3Network
from s3.run.cli import run_job
from s3.run.model_table import NOT_RUN, model_table, model_table_from_config


def test_table_counts_every_parameter_once_and_records_shapes(one_thread: None) -> None:
    torch.manual_seed(0)
    cfg = load_model_config("s3_tiny")
    net = S3Network(cfg)
    table = model_table(net, cfg, (70, 100), num_objects=2)
    assert table.trainable == sum(p.numel() for p in net.parameters() if p.requires_grad)
    assert table.frozen == sum(p.numel() for p in net.parameters() if not p.requires_grad) > 0
    rows = {r.name: r for r in table.rows}
    assert rows["pixel_encoder.vit"].trainable == 0 and rows["pixel_encoder"].frozen == 0
    assert table.padded_size == (96, 128)
    # sensory state (B, N, S, h, w) and stride-4 logits (B, N, H/4, W/4) of the padded 96x128 frame
    assert rows["mask_decoder"].output_shapes == ["(1, 2, 32, 6, 8)", "(1, 2, 24, 32)"]
    assert not rows["aux_computer"].output_shapes  # training only
    assert all(r.output_shapes for name, r in rows.items() if name != "aux_computer")
    text = table.format()
    assert f"{table.trainable:,}" in text and "padded to 96x128" in text and NOT_RUN in text


def test_model_table_job_prints_the_table(one_thread: None) -> None:
    model_cfg, table = model_table_from_config(
        compose("model_summary", ["model=s3_tiny", "frame_size=[64,96]", "num_objects=3"])
    )
    assert model_cfg.name == "s3_tiny"
    rows = {r.name: r for r in table.rows}
    assert "(1, 3, 24, 32)" not in rows["object_transformer"].output_shapes
    assert "(1, 3, 32, 4, 6)" in rows["object_transformer"].output_shapes  # 3 objects' pixel state, 4x6 grid


def test_model_table_job_rejects_a_bad_switch_in_one_line(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        run_job(lambda: model_table_from_config(compose("model_summary", ["model=s3_tiny", "model.query.read=attention"])))
    assert capsys.readouterr().err == (
        "error: model.query.read='attention' is not one of ['discriminative', 'cutie']\n"
    )
