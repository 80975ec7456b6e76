"""A short CPU training of s3_tiny on moving squares lowers the loss clearly (the whole pipeline
learns: forward, losses, groups, schedule, clipping)."""

from __future__ import annotations

from pathlib import Path

from helpers import SquaresBuilder, fit, new_trainer, tiny_stage, tiny_train_config

from s3.config import load_model_config

ITERATIONS = 80
WINDOW = 10


def test_eighty_iterations_lower_the_loss(tmp_path: Path) -> None:
    stage = tiny_stage(
        num_iterations=ITERATIONS,
        max_skip_schedule=[1],
        max_skip_fractions=[0.0],
        optim={"lr": 1e-3, "lr_schedule": "constant", "lr_step_fractions": []},
    )
    cfg = tiny_train_config(tmp_path, [stage], checkpoint_interval=ITERATIONS)
    builder = SquaresBuilder(length=256)
    report = fit(new_trainer(load_model_config("s3_tiny"), cfg, "run: loss\n", builder))[0]
    losses = [loss for _, loss in report.loss_log]
    assert len(losses) == ITERATIONS
    first, last = sum(losses[:WINDOW]) / WINDOW, sum(losses[-WINDOW:]) / WINDOW
    assert last < 0.7 * first, f"mean loss of the first {WINDOW} iterations {first:.3f}, of the last {last:.3f}"
