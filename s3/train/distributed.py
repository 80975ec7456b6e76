"""Where a process sits among torchrun's processes, and the distributed helpers the training loop
needs (DDP wrapping, SyncBatchNorm, collectives, a resumable sampler).

The process group itself is joined and left by the job's runtime (``s3.run.runtime``); the global
rank shards the data, the local rank picks the device.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Iterator, Sized

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DistributedSampler


@dataclass(frozen=True)
class DistributedContext:
    """Where this process sits: global rank, rank on its node, number of processes, its device."""

    rank: int
    local_rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1


def convert_training_batchnorms(module: nn.Module) -> int:
    """Replace every BatchNorm that trains (in training mode after ``module.train()``) with a
    SyncBatchNorm holding the same parameters and statistics; frozen (eval-mode) BatchNorms, such as
    the mask encoder's and ResNet-50's, are left alone. Returns how many were converted."""
    module.train()
    targets = [
        (parent, child_name, child)
        for parent in module.modules()
        for child_name, child in parent.named_children()
        if isinstance(child, _BatchNorm) and not isinstance(child, nn.SyncBatchNorm) and child.training
    ]
    for parent, child_name, child in targets:
        setattr(parent, child_name, nn.SyncBatchNorm.convert_sync_batchnorm(child))
    return len(targets)


def wrap_ddp(module: nn.Module, ctx: DistributedContext, synced_batchnorm: bool) -> nn.Module:
    """DDP around ``module`` when distributed (else ``module`` itself).

    Every trainable parameter gets a gradient each iteration, so there is no unused-parameter
    search. Buffers are broadcast from rank 0 each forward unless the BatchNorms are synchronised
    (CPU training keeps plain BatchNorms, whose statistics would otherwise drift apart per rank).
    """
    if not ctx.is_distributed:
        return module
    device_ids = [ctx.local_rank] if ctx.device.type == "cuda" else None
    return DistributedDataParallel(
        module, device_ids=device_ids, broadcast_buffers=not synced_batchnorm, find_unused_parameters=False
    )


def all_reduce_mean(values: dict[str, float], ctx: DistributedContext) -> dict[str, float]:
    """The mean over processes of each value (the values themselves when not distributed)."""
    if not ctx.is_distributed or not values:
        return dict(values)
    keys = list(values)  # the same order on every process: the same code built the dict
    stacked = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=ctx.device)
    dist.all_reduce(stacked)
    return {k: v / ctx.world_size for k, v in zip(keys, stacked.tolist())}


def any_process(flag: bool, ctx: DistributedContext) -> bool:
    """True on every process when ``flag`` is true on at least one."""
    if not ctx.is_distributed:
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=ctx.device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item() > 0)


def gather_objects(obj: Any, ctx: DistributedContext) -> list[Any]:
    """``obj`` of every process, indexed by global rank (picklable objects)."""
    if not ctx.is_distributed:
        return [obj]
    gathered: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(gathered, obj)
    return gathered


def barrier(ctx: DistributedContext) -> None:
    if ctx.is_distributed:
        dist.barrier()


class ResumableDistributedSampler(DistributedSampler):
    """A shuffling ``DistributedSampler`` (order fixed by seed and epoch) that can start part-way
    through its epoch, so that a resumed run sees exactly the clips an uninterrupted run would."""

    def __init__(self, dataset: Sized, num_replicas: int, rank: int, seed: int) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed, drop_last=False)
        self.start_index = 0

    def set_start_index(self, index: int) -> None:
        """Skip the first ``index`` samples of this process's share of the current epoch."""
        if not 0 <= index <= self.num_samples:
            raise ValueError(f"start index {index} outside [0, {self.num_samples}]")
        self.start_index = index

    def __iter__(self) -> Iterator[int]:
        return itertools.islice(super().__iter__(), self.start_index, None)

    def __len__(self) -> int:
        return self.num_samples - self.start_index
