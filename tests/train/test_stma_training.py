"""STMA through the architecture-neutral trainer: a short CPU training of stma_tiny on moving squares
with the paper's loss (0.5 bootstrapped CE + 0.5 Dice) lowers the loss clearly, and the stage's
``num_ref_frames`` is STMA's number of references."""

from __future__ import annotations

from pathlib import Path

from helpers import SquaresBuilder, fit, new_trainer, tiny_stage, tiny_train_config

from s3.config import load_model_config
from s3.run.architectures import architecture
from s3.stma.clip_model import STMAClipModel
from s3.stma.network import STMANetwork

ITERATIONS = 80
WINDOW = 10
# the paper's loss with p = 1 for the whole run (a falling p raises the loss value: not comparable)
STMA_LOSS = {"kind": "bootstrap", "ce_weight": 0.5, "dice_weight": 0.5, "bootstrap_start_warm": ITERATIONS,
             "bootstrap_end_warm": 2 * ITERATIONS}


def test_the_registry_wraps_stma_in_its_clip_forward() -> None:
    cfg = load_model_config("stma_tiny")
    network = architecture(cfg).new_network(cfg)
    clip_model = architecture(cfg).clip_model(network, tiny_train_config(Path("unused")).stages[0])
    assert isinstance(network, STMANetwork) and isinstance(clip_model, STMAClipModel)
    assert clip_model.num_references == 3 and clip_model.network is network


def test_eighty_iterations_lower_the_loss(tmp_path: Path) -> None:
    stage = tiny_stage(
        num_iterations=ITERATIONS,
        num_ref_frames=2,
        max_skip_schedule=[1],
        max_skip_fractions=[0.0],
        optim={"lr": 3e-4, "lr_schedule": "constant", "lr_step_fractions": [], "backbone_lr_ratio": 1.0},
        loss=STMA_LOSS,
    )
    cfg = tiny_train_config(tmp_path, [stage], checkpoint_interval=ITERATIONS)
    builder = SquaresBuilder(length=256, num_frames=3)
    report = fit(new_trainer(load_model_config("stma_tiny"), cfg, "run: stma loss\n", builder))[0]
    losses = [loss for _, loss in report.loss_log]
    assert len(losses) == ITERATIONS
    first, last = sum(losses[:WINDOW]) / WINDOW, sum(losses[-WINDOW:]) / WINDOW
    assert last < 0.7 * first, f"mean loss of the first {WINDOW} iterations {first:.3f}, of the last {last:.3f}"
    log = (tmp_path / "logs" / "rank0.log").read_text()
    assert "bootstrap_p=1," in log and "sensory" not in log  # no auxiliary terms
