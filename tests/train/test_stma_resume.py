"""Exact resume of an STMA training on CPU: 6 iterations straight give bit-identical weights and
optimiser state to 2 iterations, SIGKILL, ``resume=auto`` and 4 more (the reference draws come from
the checkpointed generator; the bootstrap share from the stage iteration).

Run as a script (``python tests/train/test_stma_resume.py RUN_DIR``) this file is the training
process that the test kills when it asks for its 3rd batch, after the checkpoint of iteration 2.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import torch
from helpers import SquaresBuilder, fit, new_trainer, tiny_stage, tiny_train_config

from s3.config import load_model_config
from s3.train.checkpoint import checkpoint_path, load_checkpoint, weights_path
from s3.train.trainer import StageReport

# 5-frame clips with 2 references drawn from up to 4 past frames; the bootstrap share moves within the run
STAGE = tiny_stage(
    num_iterations=6,
    num_ref_frames=2,
    optim={"lr": 1e-4, "lr_step_fractions": [0.5], "backbone_lr_ratio": 1.0},
    loss={"kind": "bootstrap", "ce_weight": 0.5, "dice_weight": 0.5, "bootstrap_start_warm": 1, "bootstrap_end_warm": 5},
)
BATCH = STAGE["batch_size"]
KILLED_AT = 2


def train(run_dir: Path, builder: SquaresBuilder, resume: str = "none") -> list[StageReport]:
    cfg = tiny_train_config(run_dir, [STAGE], checkpoint_interval=KILLED_AT, resume=resume)
    return fit(new_trainer(load_model_config("stma_tiny"), cfg, "run: stma-resume-test\n", builder))


def squares() -> SquaresBuilder:
    return SquaresBuilder(num_frames=5, length=16)


def test_kill_and_resume_equals_an_uninterrupted_run(tmp_path: Path) -> None:
    straight = squares()
    train(tmp_path / "straight", straight)

    killed = subprocess.run(
        [sys.executable, __file__, str(tmp_path / "resumed")], capture_output=True, text=True, timeout=300
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert checkpoint_path(tmp_path / "resumed", KILLED_AT).is_file()

    torch.manual_seed(999)  # the resumed run must not depend on the state this process is in
    resumed = squares()
    reports = train(tmp_path / "resumed", resumed, resume="auto")
    assert (reports[0].start_iteration, reports[0].end_iteration, reports[0].finished) == (KILLED_AT, 6, True)
    assert resumed.served == straight.served[KILLED_AT * BATCH :]

    a = load_checkpoint(checkpoint_path(tmp_path / "straight", 6))
    b = load_checkpoint(checkpoint_path(tmp_path / "resumed", 6))
    assert a["network"].keys() == b["network"].keys()
    assert any(k.startswith("pixel_encoder.blocks.") for k in a["network"])  # the backbone is trained
    assert [k for k in a["network"] if not torch.equal(a["network"][k], b["network"][k])] == []
    for state_a, state_b in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert all(torch.equal(state_a[k], state_b[k]) for k in ("exp_avg", "exp_avg_sq", "step"))
    assert a["data_position"] == b["data_position"] and a["scheduler"] == b["scheduler"]
    weights_a = torch.load(weights_path(tmp_path / "straight", "main"), weights_only=True)
    weights_b = torch.load(weights_path(tmp_path / "resumed", "main"), weights_only=True)
    assert weights_a.keys() == weights_b.keys() and all(torch.equal(weights_a[k], weights_b[k]) for k in weights_a)


if __name__ == "__main__":
    builder = squares()
    builder.kwargs["kill_after"] = KILLED_AT * BATCH
    train(Path(sys.argv[1]), builder)
