"""Two-process DDP on CPU (gloo) under torchrun: after a few iterations both processes hold the same
parameters, they trained on different clips, and each wrote its own log. And which BatchNorms
become SyncBatchNorms (CUDA DDP only, so checked here without a process group).

Run under torchrun (``python -m torch.distributed.run --nproc_per_node=2 tests/train/test_ddp.py OUT``)
this file is the training process: it trains, then saves its parameters, served clips and losses
to ``OUT/rank<r>.pt``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import torch
from helpers import SquaresBuilder, fit, new_trainer, tiny_stage, tiny_train_config

from s3.config import load_model_config
from s3.model.network import S3Network
from s3.train.distributed import convert_training_batchnorms

ITERATIONS = 3
GLOBAL_BATCH = 4


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_gloo_processes_stay_in_sync_on_different_clips(tmp_path: Path) -> None:
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={free_port()}",
        __file__, str(tmp_path),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))

    assert rank0["params"].keys() == rank1["params"].keys()
    unequal = [k for k in rank0["params"] if not torch.equal(rank0["params"][k], rank1["params"][k])]
    assert unequal == []
    torch.manual_seed(1234)  # the trainer's seed: the weights both processes started from
    initial = dict(S3Network(load_model_config("s3_tiny")).named_parameters())
    assert any(not torch.equal(initial[k], v) for k, v in rank0["params"].items())  # they did train

    clips0, clips1 = ({index for _, index in r["served"]} for r in (rank0, rank1))
    assert len(rank0["served"]) == len(rank1["served"]) == ITERATIONS * GLOBAL_BATCH // 2
    assert clips0.isdisjoint(clips1)  # one epoch, split between the processes
    assert rank0["losses"] == rank1["losses"]  # logged losses are averaged over the processes

    logs = tmp_path / "run" / "logs"
    assert "[rank 1]" in (logs / "rank1.log").read_text() and "[rank 0]" in (logs / "rank0.log").read_text()
    assert (tmp_path / "run" / "weights" / "main.pth").is_file()


def test_only_the_training_batchnorms_become_sync_batchnorms() -> None:
    """The encoder's BatchNorms train and are synchronised; the mask encoder's (frozen statistics)
    stay plain and in eval mode; parameter names do not change (checkpoints stay compatible)."""
    network = S3Network(load_model_config("s3_tiny"))
    names = list(network.state_dict())
    converted = convert_training_batchnorms(network)
    sync = [n for n, m in network.named_modules() if isinstance(m, torch.nn.SyncBatchNorm)]
    plain = [n for n, m in network.named_modules() if type(m) is torch.nn.BatchNorm2d]
    assert converted == len(sync) == 8 and all(n.startswith("pixel_encoder.") for n in sync)
    assert plain and all(n.startswith("mask_encoder.") for n in plain)
    network.train()
    assert all(not m.training for n, m in network.named_modules() if n in plain)
    assert list(network.state_dict()) == names


if __name__ == "__main__":
    out = Path(sys.argv[1])
    builder = SquaresBuilder(length=16)
    stage = tiny_stage(
        num_iterations=ITERATIONS, batch_size=GLOBAL_BATCH, max_skip_schedule=[1], max_skip_fractions=[0.0]
    )
    cfg = tiny_train_config(out / "run", [stage])
    trainer = new_trainer(load_model_config("s3_tiny"), cfg, "run: ddp-test\n", builder)
    reports = fit(trainer)
    assert trainer.network is not None
    torch.save(
        {
            "params": {name: p.detach().clone() for name, p in trainer.network.named_parameters()},
            "served": builder.served,
            "losses": reports[0].loss_log,
        },
        out / f"rank{os.environ['RANK']}.pt",
    )
