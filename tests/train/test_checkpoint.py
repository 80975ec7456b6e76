"""Atomic checkpoint files, finding and pruning them, and RNG state capture/restore."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import SquaresBuilder, fit, new_trainer, tiny_stage, tiny_train_config

from s3.config import load_model_config
from s3.model import weights as weight_files
from s3.model.build import build_network
from s3.model.network import S3Network
from s3.model.weights import CheckpointError, atomic_save
from s3.train.checkpoint import (
    capture_rng_state,
    checkpoint_path,
    find_latest_checkpoint,
    load_checkpoint,
    prune_checkpoints,
    restore_rng_state,
    weights_path,
)


def test_atomic_save_replaces_the_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "state.pth"
    atomic_save({"a": torch.ones(2)}, path)
    atomic_save({"a": torch.zeros(2)}, path)
    assert torch.equal(torch.load(path, weights_only=True)["a"], torch.zeros(2))
    assert [p.name for p in path.parent.iterdir()] == ["state.pth"]


def test_a_failed_save_keeps_the_previous_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "state.pth"
    atomic_save({"a": torch.ones(2)}, path)

    def dies_half_way(obj: object, file) -> None:
        file.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(weight_files.torch, "save", dies_half_way)
    with pytest.raises(OSError, match="disk full"):
        atomic_save({"a": torch.zeros(2)}, path)
    monkeypatch.undo()
    assert torch.equal(torch.load(path, weights_only=True)["a"], torch.ones(2))
    assert [p.name for p in tmp_path.iterdir()] == ["state.pth"]


def test_latest_is_the_highest_iteration_and_pruning_keeps_the_newest(tmp_path: Path) -> None:
    assert find_latest_checkpoint(tmp_path) is None
    for iteration in (100, 3, 20):
        atomic_save({"iteration": iteration}, checkpoint_path(tmp_path, iteration))
    (tmp_path / "checkpoints" / "checkpoint_notes.txt").write_text("not a checkpoint")
    assert find_latest_checkpoint(tmp_path) == checkpoint_path(tmp_path, 100)
    prune_checkpoints(tmp_path, keep=2)
    remaining = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert remaining == ["checkpoint_00000020.pth", "checkpoint_00000100.pth", "checkpoint_notes.txt"]


def test_rng_states_round_trip_through_a_weights_only_file(tmp_path: Path) -> None:
    generator = torch.Generator().manual_seed(7)
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    np.random.normal()  # leaves a cached gaussian in NumPy's state
    atomic_save({"rng": capture_rng_state(generator)}, tmp_path / "rng.pth")

    def draws() -> tuple:
        return (
            random.random(),
            float(np.random.normal()),
            torch.rand(3).tolist(),
            torch.rand(2, generator=generator).tolist(),
        )

    expected = draws()
    restore_rng_state(torch.load(tmp_path / "rng.pth", weights_only=True)["rng"], generator)
    assert draws() == expected


def test_unreadable_or_foreign_files_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"train.resume: file not found: .*missing.pth"):
        load_checkpoint(tmp_path / "missing.pth")
    (tmp_path / "broken.pth").write_bytes(b"not a torch file")
    with pytest.raises(CheckpointError, match=r"train.resume: cannot read .*broken.pth"):
        load_checkpoint(tmp_path / "broken.pth")
    torch.save({"weights": torch.ones(1)}, tmp_path / "weights.pth")
    with pytest.raises(CheckpointError, match="is not a training checkpoint"):
        load_checkpoint(tmp_path / "weights.pth")


def test_empty_truncated_and_diverged_checkpoints_name_the_file(tmp_path: Path) -> None:
    (tmp_path / "empty.pth").touch()  # 0 bytes: the message used to be an IndexError
    with pytest.raises(CheckpointError, match=r"^train.resume: .*empty.pth is empty \(0 bytes\)"):
        load_checkpoint(tmp_path / "empty.pth")
    state = {"network": {"w": torch.ones(64)}, "iteration": 3}
    torch.save(state, tmp_path / "whole.pth")
    data = (tmp_path / "whole.pth").read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"^train.resume: cannot read .*cut.pth \(truncated"):
        load_checkpoint(tmp_path / "cut.pth")
    state["network"]["w"][5] = float("nan")
    torch.save(state, tmp_path / "nan.pth")
    with pytest.raises(CheckpointError, match=r"^train.resume: .*nan.pth holds NaN or inf values in w;"):
        load_checkpoint(tmp_path / "nan.pth")


def test_weights_file_leaves_out_a_vit_that_its_backbone_file_provides(tmp_path: Path) -> None:
    torch.manual_seed(0)
    vit_file = tmp_path / "tiny_vit.pth"
    torch.save(S3Network(load_model_config("s3_tiny")).pixel_encoder.vit.state_dict(), vit_file)
    backbone = [f"model.backbone.weights={vit_file}", "model.backbone.weights_format=timm"]
    run_dir = tmp_path / "run"
    cfg = tiny_train_config(run_dir, [tiny_stage(num_iterations=1)])
    fit(new_trainer(load_model_config("s3_tiny", backbone), cfg, "run: vit\n", SquaresBuilder(length=4)))
    weights = torch.load(weights_path(run_dir, "main"), weights_only=True)
    assert weights and not any(k.startswith("pixel_encoder.vit.") for k in weights)
    # evaluation rebuilds the ViT from its own file and takes everything else from the weights file
    rebuilt = build_network(load_model_config("s3_tiny", [*backbone, f"model.weights={weights_path(run_dir, 'main')}"]))
    state = rebuilt.state_dict()
    assert all(torch.equal(state[k], v) for k, v in weights.items())
