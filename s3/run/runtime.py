"""The process a job runs in: device, intra-op threads, determinism, and torchrun's process group.

Every job (training, evaluation, the quickstart, the benchmark, the model table) opens one
:func:`process_runtime` and gets a :class:`~s3.train.distributed.DistributedContext` (rank, local
rank, world size, device). Under ``torchrun`` (``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, read here
when the job starts, never at import) the process joins the group, NCCL on CUDA and gloo on the
CPU; the global rank shards the work and the local rank picks the GPU. On exit the group is left
and the torch settings changed here are restored (tests run several jobs in one process).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.distributed as dist

from s3.config.validation import ConfigError
from s3.train.distributed import DistributedContext


def torchrun_ranks() -> tuple[int, int, int]:
    """(global rank, local rank, world size) from torchrun's environment; (0, 0, 1) without torchrun."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("LOCAL_RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def select_device(name: str, local_rank: int = 0, key: str = "device") -> torch.device:
    """``auto``: CUDA when available, else the CPU; under torchrun each process takes its local GPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"{key}=cuda: no CUDA device is available")
        return torch.device("cuda", local_rank)
    if name != "cpu":
        raise ConfigError(f"{key}={name!r} is not one of ['auto', 'cpu', 'cuda']")
    return torch.device("cpu")


def _set_determinism(deterministic: bool, warn_only: bool) -> None:
    """``torch.use_deterministic_algorithms``, called only for a change: each call imports
    ``torch._dynamo`` (about 2.5 s on the 2-core machine) even when nothing changes."""
    enabled = torch.are_deterministic_algorithms_enabled()
    current = (enabled, enabled and torch.is_deterministic_algorithms_warn_only_enabled())
    if (deterministic, deterministic and warn_only) != current:  # warn_only means nothing while off
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)


@contextmanager
def process_runtime(
    device: str = "auto",
    threads: int = 0,
    deterministic: bool = False,
    cudnn_benchmark: bool = True,
    device_key: str = "device",
) -> Iterator[DistributedContext]:
    """Set the process up for a job and yield where it runs.

    ``threads``: torch intra-op threads (0 = torch's default); ``deterministic``: deterministic
    algorithms (bit-exact resume on the CPU; warn-only on CUDA). Joins torchrun's process group when
    there is more than one process, and leaves it on exit.
    """
    rank, local_rank, world_size = torchrun_ranks()
    chosen = select_device(device, local_rank, device_key)
    if chosen.type == "cuda":
        torch.cuda.set_device(chosen)
    previous_determinism = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
    )
    previous = (torch.get_num_threads(), torch.backends.cudnn.benchmark)
    joined = False
    try:
        if threads:
            torch.set_num_threads(threads)
        _set_determinism(deterministic, warn_only=chosen.type == "cuda")
        torch.backends.cudnn.benchmark = cudnn_benchmark and not deterministic
        if world_size > 1 and not dist.is_initialized():
            dist.init_process_group(backend="nccl" if chosen.type == "cuda" else "gloo", init_method="env://")
            joined = True
        yield DistributedContext(rank=rank, local_rank=local_rank, world_size=world_size, device=chosen)
    finally:
        if joined and dist.is_initialized():
            dist.destroy_process_group()
        torch.set_num_threads(previous[0])
        _set_determinism(*previous_determinism)
        torch.backends.cudnn.benchmark = previous[1]
