"""Multi-node training, simulated on one machine: two ``torchrun --nnodes=2 --node_rank=0/1`` launches
(one process each, gloo on the CPU, rendezvous at 127.0.0.1) train to exactly the weights of one
``--nproc_per_node=2`` launch. The training process is tests/train/test_ddp.py run as a script."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_ddp import free_port

DDP_SCRIPT = Path(__file__).resolve().parent / "test_ddp.py"
TIMEOUT_S = 300


def torchrun(*args: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", *args, str(DDP_SCRIPT)]


def finish(process: subprocess.Popen) -> None:
    try:
        _, stderr = process.communicate(timeout=TIMEOUT_S)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, stderr[-4000:]


@pytest.mark.slow
def test_two_nodes_train_to_the_weights_of_one_node_with_two_processes(tmp_path: Path) -> None:
    single, multi = tmp_path / "one_node", tmp_path / "two_nodes"
    finish(subprocess.Popen(
        [*torchrun("--nproc_per_node=2", f"--master_port={free_port()}"), str(single)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    ))
    port = free_port()
    nodes = [
        subprocess.Popen(
            [*torchrun("--nnodes=2", f"--node_rank={rank}", "--nproc_per_node=1", "--master_addr=127.0.0.1",
                       f"--master_port={port}"), str(multi)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        for rank in (0, 1)
    ]
    for node in nodes:
        finish(node)

    for rank in (0, 1):
        expected = torch.load(single / f"rank{rank}.pt", weights_only=True)
        actual = torch.load(multi / f"rank{rank}.pt", weights_only=True)
        assert actual["served"] == expected["served"]  # the global rank, not the local one, shards the data
        assert actual["losses"] == expected["losses"]
        different = [k for k, v in expected["params"].items() if not torch.equal(actual["params"][k], v)]
        assert different == []
    assert (multi / "run" / "weights" / "main.pth").is_file()
    assert (multi / "run" / "logs" / "rank1.log").is_file()
