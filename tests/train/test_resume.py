"""Exact resume on CPU: 6 iterations straight give bit-identical weights and optimiser state to
2 iterations, SIGKILL, ``resume=auto`` and 4 more; and stages run in order and resume correctly.

Run as a script (``python tests/train/test_resume.py RUN_DIR``) this file is the training process
that the test kills: it dies (SIGKILL, no clean-up) when asking for its 3rd batch, after the
checkpoint of iteration 2, in the middle of an epoch; the max skip changes at iteration 3.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import SquaresBuilder, fit, new_trainer, tiny_stage, tiny_train_config

from s3.config import ConfigError, load_model_config
from s3.train.checkpoint import checkpoint_path, load_checkpoint, weights_path
from s3.train.trainer import StageReport

# 5-frame clips with 2 memory frames (memory draws), deep updates and drop path: every RNG matters
STAGE = tiny_stage(num_iterations=6, num_ref_frames=2, deep_update_prob=0.5)
BATCH = STAGE["batch_size"]
KILLED_AT = 2  # iterations done when the process is killed


def train(run_dir: Path, builder: SquaresBuilder, resume: str = "none") -> list[StageReport]:
    model_cfg = load_model_config("s3_tiny", ["model.encoder.drop_path_rate=0.2"])
    cfg = tiny_train_config(run_dir, [STAGE], checkpoint_interval=KILLED_AT, resume=resume)
    return fit(new_trainer(model_cfg, cfg, "run: resume-test\n", builder))


def squares() -> SquaresBuilder:
    return SquaresBuilder(num_frames=5, length=16)


def test_kill_and_resume_equals_an_uninterrupted_run(tmp_path: Path) -> None:
    straight = squares()
    train(tmp_path / "straight", straight)

    killed = subprocess.run(
        [sys.executable, __file__, str(tmp_path / "resumed")], capture_output=True, text=True, timeout=120
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert checkpoint_path(tmp_path / "resumed", KILLED_AT).is_file()
    assert not checkpoint_path(tmp_path / "resumed", KILLED_AT + 2).exists()

    torch.manual_seed(999)  # the resumed run must not depend on the state this process is in
    resumed = squares()
    reports = train(tmp_path / "resumed", resumed, resume="auto")
    assert (reports[0].start_iteration, reports[0].end_iteration, reports[0].finished) == (KILLED_AT, 6, True)
    assert resumed.served == straight.served[KILLED_AT * BATCH :]  # the same clips, in the same order

    a = load_checkpoint(checkpoint_path(tmp_path / "straight", 6))
    b = load_checkpoint(checkpoint_path(tmp_path / "resumed", 6))
    assert a["network"].keys() == b["network"].keys()
    different = [k for k in a["network"] if not torch.equal(a["network"][k], b["network"][k])]
    assert different == []
    assert a["optimizer"]["state"].keys() == b["optimizer"]["state"].keys()
    for state_a, state_b in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert all(torch.equal(state_a[k], state_b[k]) for k in ("exp_avg", "exp_avg_sq", "step"))
    assert a["data_position"] == b["data_position"] and a["scheduler"] == b["scheduler"]
    weights_a = torch.load(weights_path(tmp_path / "straight", "main"), weights_only=True)
    weights_b = torch.load(weights_path(tmp_path / "resumed", "main"), weights_only=True)
    assert all(torch.equal(weights_a[k], weights_b[k]) for k in weights_a)
    # the tiny ViT is random (no model.backbone.weights file), so it travels with the weights
    assert any(k.startswith("pixel_encoder.vit.") for k in weights_a)


def test_sigterm_stops_at_the_iteration_boundary_with_a_checkpoint(tmp_path: Path) -> None:
    builder = SquaresBuilder(num_frames=3, length=16, kill_after=BATCH, kill_signal=signal.SIGTERM)
    cfg = tiny_train_config(tmp_path, [tiny_stage(num_iterations=6)])
    report = fit(new_trainer(load_model_config("s3_tiny"), cfg, "run: sigterm\n", builder))[0]
    assert (report.end_iteration, report.finished) == (2, False)  # the iteration under way completes
    assert load_checkpoint(checkpoint_path(tmp_path, 2))["iteration"] == 2
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is removed again

    cfg = tiny_train_config(tmp_path, [tiny_stage(num_iterations=6)], resume="auto")
    builder = SquaresBuilder(num_frames=3, length=16)
    resumed = fit(new_trainer(load_model_config("s3_tiny"), cfg, "run: sigterm\n", builder))[0]
    assert (resumed.start_iteration, resumed.end_iteration, resumed.finished) == (2, 6, True)


def test_a_fresh_start_refuses_a_run_directory_with_checkpoints(tmp_path: Path) -> None:
    checkpoint_path(tmp_path, 3).parent.mkdir(parents=True)
    torch.save({"iteration": 3}, checkpoint_path(tmp_path, 3))
    with pytest.raises(ConfigError, match="already holds checkpoints .* train.resume=auto or start a new train.exp_id"):
        train(tmp_path, squares())


def test_stages_run_in_order_and_a_finished_run_has_nothing_left(tmp_path: Path) -> None:
    pretraining = tiny_stage(
        name="pretraining",
        num_iterations=2,
        max_skip_schedule=[1],
        max_skip_fractions=[0.0],
        optim={"lr": 1e-4, "lr_schedule": "constant", "lr_step_fractions": []},
        data={"seq_length": 3},  # a stage's data overrides (the cutie recipe's turn static.enabled on)
    )
    stages = [pretraining, tiny_stage(num_iterations=2)]
    cfg = tiny_train_config(tmp_path, stages, keep_checkpoints=5, image_interval=1)
    builder = SquaresBuilder(length=8)
    reports = fit(new_trainer(load_model_config("s3_tiny"), cfg, "run: stages\n", builder))
    assert [(r.name, r.start_iteration, r.end_iteration, r.finished) for r in reports] == [
        ("pretraining", 0, 2, True),
        ("main", 0, 2, True),
    ]
    # each stage's own data config; the main stage's dataset is rebuilt when its max skip changes
    assert [c.seq_length for c in builder.configs] == [3, 8, 8]
    assert checkpoint_path(tmp_path, 2).is_file() and checkpoint_path(tmp_path, 4).is_file()
    assert load_checkpoint(checkpoint_path(tmp_path, 4))["stage_name"] == "main"
    assert weights_path(tmp_path, "pretraining").is_file() and weights_path(tmp_path, "main").is_file()
    assert (tmp_path / "config.yaml").read_text() == "run: stages\n"
    assert "main it 2/2: ce=" in (tmp_path / "logs" / "rank0.log").read_text()
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))  # scalars and image grids

    cfg = tiny_train_config(tmp_path, stages, resume="auto")
    assert fit(new_trainer(load_model_config("s3_tiny"), cfg, "run: stages\n", builder)) == []


if __name__ == "__main__":
    builder = squares()
    builder.kwargs["kill_after"] = KILLED_AT * BATCH
    train(Path(sys.argv[1]), builder)
