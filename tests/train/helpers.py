"""Shared pieces of the training tests: a tiny contract-following clip dataset (moving squares) and
small training configs for ``s3_tiny`` on 64x64 frames.

Imported as ``from helpers import ...`` (pytest prepends this folder to ``sys.path``; so does
Python when a test file here runs as a script, as the DDP test does under torchrun).
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any, Optional

import torch
from torch.utils.data import Dataset

from s3.config.data import DataConfig
from s3.config.train import TrainConfig, to_train_config
from s3.run.architectures import architecture
from s3.run.runtime import process_runtime
from s3.train.trainer import StageReport, Trainer

FRAME_SIZE = 64


class MovingSquares(Dataset):
    """Clips of 1..max_objects coloured squares sliding over a smooth random background.

    Items follow the trainer's data contract and are a pure function of (seed, epoch, index);
    ``served`` (shareable between datasets) records every (epoch, index) handed out. With
    ``kill_after`` set, the process sends itself ``kill_signal`` when asked for an item once
    ``served`` holds that many.
    """

    def __init__(
        self,
        length: int = 32,
        num_frames: int = 3,
        size: int = FRAME_SIZE,
        max_objects: int = 2,
        max_skip: int = 1,
        seed: int = 0,
        served: Optional[list[tuple[int, int]]] = None,
        kill_after: Optional[int] = None,
        kill_signal: int = signal.SIGKILL,
    ) -> None:
        self.length = length
        self.num_frames = num_frames
        self.size = size
        self.max_objects = max_objects
        self.max_skip = max_skip
        self.seed = seed
        self.epoch = 0
        self.kill_after = kill_after
        self.kill_signal = kill_signal
        self.served = served if served is not None else []

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, Any]:
        if self.kill_after is not None and len(self.served) == self.kill_after:
            os.kill(os.getpid(), self.kill_signal)
        self.served.append((self.epoch, index))
        g = torch.Generator().manual_seed(((self.seed * 1009 + self.epoch) * 100003 + index) % 2**62)
        t, s, n_max = self.num_frames, self.size, self.max_objects
        coarse = torch.rand(1, 3, 4, 4, generator=g)
        background = torch.nn.functional.interpolate(coarse, size=(s, s), mode="bilinear", align_corners=False)[0]
        frames = background.unsqueeze(0).repeat(t, 1, 1, 1) * 0.6
        labels = torch.zeros(t, s, s, dtype=torch.int64)
        num_objects = int(torch.randint(1, n_max + 1, (), generator=g))
        for k in range(1, num_objects + 1):
            side = int(torch.randint(s // 5, s // 3, (), generator=g))
            start = torch.randint(0, s - side, (2,), generator=g)
            velocity = torch.randint(-3, 4, (2,), generator=g) * self.max_skip
            colour = 0.4 + 0.6 * torch.rand(3, generator=g)
            for f in range(t):
                y, x = (start + f * velocity).clamp(0, s - side).tolist()
                frames[f, :, y : y + side, x : x + side] = colour.view(3, 1, 1)
                labels[f, y : y + side, x : x + side] = k
        selector = torch.zeros(n_max)
        selector[:num_objects] = 1.0
        return {
            "frames": frames.clamp(0, 1),
            "labels": labels,
            "selector": selector,
            "num_objects": num_objects,
            "info": {"dataset": "squares", "video": f"v{index}", "frames": [f"{f:05d}" for f in range(t)]},
        }


class SquaresBuilder:
    """A ``build_dataset`` for the Trainer: a MovingSquares per call, all logging to ``served``;
    ``configs`` records the data config of every call."""

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs
        self.served: list[tuple[int, int]] = []
        self.configs: list[DataConfig] = []

    def __call__(self, cfg: DataConfig, max_skip: int, seed: int) -> MovingSquares:
        self.configs.append(cfg)
        return MovingSquares(max_skip=max_skip, seed=seed, served=self.served, **self.kwargs)


def tiny_stage(**overrides: Any) -> dict[str, Any]:
    """One stage for s3_tiny on CPU: 6 iterations of batch 2, 256 loss points, max skip 1 then 2."""
    stage: dict[str, Any] = {
        "name": "main",
        "num_iterations": 6,
        "batch_size": 2,
        "precision": "fp32",
        "num_ref_frames": 3,
        "max_skip_schedule": [1, 2],  # the curriculum switches at half time: a new dataset and epoch
        "max_skip_fractions": [0.0, 0.5],
        "optim": {"lr": 1e-4, "lr_step_fractions": [0.5]},
        "loss": {"num_points": 256},
    }
    stage.update(overrides)
    return stage


def tiny_train_config(run_dir: Path, stages: Optional[list[dict[str, Any]]] = None, **overrides: Any) -> TrainConfig:
    """A CPU, deterministic, one-thread config logging every iteration, no images, loading in-process."""
    node: dict[str, Any] = {
        "exp_id": "test",
        "run_dir": str(run_dir),
        "stages": stages if stages is not None else [tiny_stage()],
        "device": "cpu",
        "threads": 1,
        "deterministic": True,
        "checkpoint_interval": 1000,
        "log_interval": 1,
        "image_interval": 0,
        "seed": 1234,
        "num_workers": 0,
    }
    node.update(overrides)
    return to_train_config(node)


TEST_DATA_NODE: dict[str, Any] = {"name": "squares"}  # the data config is unused by SquaresBuilder


def new_trainer(model_cfg: Any, cfg: TrainConfig, run_config: str, builder: SquaresBuilder) -> Trainer:
    """A Trainer of ``model_cfg``'s architecture on the squares (``TEST_DATA_NODE``)."""
    return Trainer(architecture(model_cfg), model_cfg, cfg, TEST_DATA_NODE, run_config, builder)


def fit(trainer: Trainer) -> list[StageReport]:
    """Train in the process runtime the trainer's config asks for (as the training job does)."""
    cfg = trainer.cfg
    with process_runtime(cfg.device, cfg.threads, cfg.deterministic, cfg.cudnn_benchmark) as ctx:
        return trainer.fit(ctx)
