"""Run-directory logging: per-rank text logs, TensorBoard scalars and clip image grids.

Every process writes ``<run_dir>/logs/rank<r>.log``; rank 0 also logs to the console (through
``tqdm.write`` so the progress bar stays intact) and owns the TensorBoard writer
(``<run_dir>/tensorboard``). Other ranks print only warnings and errors.
"""

from __future__ import annotations

import colorsys
import logging
import sys
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

LOG_FORMAT = "%(asctime)s [rank {rank}] %(levelname)s %(name)s: %(message)s"
PACKAGE_LOGGER = "s3"
MAX_GRID_CLIPS = 2


class TqdmHandler(logging.StreamHandler):
    """A console handler that prints through ``tqdm.write`` so that it does not break a progress bar."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # logging must never raise; report as logging itself does
            self.handleError(record)


class RunLogging:
    """The log handlers of one process on the ``s3`` package logger; ``close`` removes them."""

    def __init__(self, run_dir: Path, rank: int) -> None:
        formatter = logging.Formatter(LOG_FORMAT.format(rank=rank))
        log_dir = run_dir / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        file_handler = logging.FileHandler(log_dir / f"rank{rank}.log")
        file_handler.setLevel(logging.INFO)
        console = TqdmHandler()
        console.setLevel(logging.INFO if rank == 0 else logging.WARNING)
        self.handlers: list[logging.Handler] = [file_handler, console]
        self.logger = logging.getLogger(PACKAGE_LOGGER)
        self.previous = (self.logger.level, self.logger.propagate)
        self.logger.setLevel(logging.INFO)
        self.logger.propagate = False  # these handlers are the run's output; no second copy via the root
        for handler in self.handlers:
            handler.setFormatter(formatter)
            self.logger.addHandler(handler)

    def close(self) -> None:
        for handler in self.handlers:
            self.logger.removeHandler(handler)
            handler.close()
        self.logger.setLevel(self.previous[0])
        self.logger.propagate = self.previous[1]


class ScalarWriter:
    """TensorBoard writer on rank 0, a no-op elsewhere."""

    def __init__(self, run_dir: Path, enabled: bool) -> None:
        self.writer = SummaryWriter(log_dir=str(run_dir / "tensorboard")) if enabled else None

    def scalars(self, prefix: str, values: dict[str, float], step: int) -> None:
        """Each value under the tag ``<prefix>/<name>``."""
        if self.writer is not None:
            for name, value in values.items():
                self.writer.add_scalar(f"{prefix}/{name}", value, step)

    def image(self, tag: str, image: Tensor, step: int) -> None:
        """image: (3, H, W) float in [0, 1]."""
        if self.writer is not None:
            self.writer.add_image(tag, image, step)

    def text(self, tag: str, text: str, step: int = 0) -> None:
        if self.writer is not None:
            self.writer.add_text(tag, text, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def label_palette(num_labels: int) -> Tensor:
    """(num_labels, 3) RGB colours in [0, 1]: black background, then well-separated hues."""
    colours = [(0.0, 0.0, 0.0)]
    for k in range(1, num_labels):
        colours.append(colorsys.hsv_to_rgb((k * 0.618034) % 1.0, 0.85, 1.0))
    return torch.tensor(colours)


def overlay(frames: Tensor, labels: Tensor, palette: Tensor, alpha: float = 0.5) -> Tensor:
    """frames (T, 3, H, W) in [0, 1]; labels (T, H, W) int -> frames with coloured objects (T, 3, H, W)."""
    colour = palette.to(frames.device)[labels].permute(0, 3, 1, 2)
    foreground = (labels > 0).unsqueeze(1)
    return torch.where(foreground, (1 - alpha) * frames + alpha * colour, frames)


def clip_grid(frames: Tensor, probs: Tensor, labels: Tensor, num_objects: Tensor) -> Tensor:
    """An image of up to two clips of a batch: per clip a row of frames, a row of predictions
    (frame 0 shows its input ground truth) and a row of ground truth.

    frames (B, T, 3, H, W) in [0, 1]; probs (B, T-1, N+1, H, W); labels (B, T, H, W);
    num_objects (B,) -> (3, rows * H, T * W) float in [0, 1].
    """
    palette = label_palette(int(probs.shape[2]))
    rows = []
    for b in range(min(MAX_GRID_CLIPS, frames.shape[0])):
        clip = frames[b].float().cpu()
        truth = labels[b].cpu()
        predicted = torch.cat([truth[:1], probs[b].detach().argmax(dim=1).cpu()])
        predicted = predicted.masked_fill(predicted > int(num_objects[b]), 0)
        for row in (clip, overlay(clip, predicted, palette), overlay(clip, truth, palette)):
            rows.append(torch.cat(list(row), dim=2))  # (3, H, T*W)
    return torch.cat(rows, dim=1).clamp(0, 1)


def format_scalars(values: dict[str, float]) -> str:
    """``name=value`` pairs for a log line, 4 significant digits."""
    return ", ".join(f"{name}={value:.4g}" for name, value in values.items())
