"""Training checkpoints on disk: atomic writes, finding the latest one, and RNG state capture.

A run directory holds ``checkpoints/checkpoint_<global iteration, 8 digits>.pth`` (the full
training state, the newest ``keep`` kept) and ``weights/<stage>.pth`` (the network for
evaluation, without the frozen ViT when that can be reloaded from ``model.backbone.weights``).
Every file is written to a temporary name in the same folder, flushed to disk and renamed over
the target, so a crash never leaves a truncated checkpoint behind. All
contents are tensors and plain Python values, so they load with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from s3.model.weights import CheckpointError, check_finite, load_file

CHECKPOINT_DIR = "checkpoints"
WEIGHTS_DIR = "weights"
_CHECKPOINT_NAME = re.compile(r"^checkpoint_(\d{8})\.pth$")


def checkpoint_path(run_dir: Path, global_iteration: int) -> Path:
    """``run_dir/checkpoints/checkpoint_<global_iteration>.pth``."""
    return run_dir / CHECKPOINT_DIR / f"checkpoint_{global_iteration:08d}.pth"


def weights_path(run_dir: Path, stage_name: str) -> Path:
    """``run_dir/weights/<stage_name>.pth``."""
    return run_dir / WEIGHTS_DIR / f"{stage_name}.pth"


def list_checkpoints(run_dir: Path) -> list[Path]:
    """The run's checkpoint files, oldest first (by the iteration in their names)."""
    folder = run_dir / CHECKPOINT_DIR
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _CHECKPOINT_NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def find_latest_checkpoint(run_dir: Path) -> Optional[Path]:
    """The checkpoint with the highest global iteration in ``run_dir``, or None."""
    checkpoints = list_checkpoints(run_dir)
    return checkpoints[-1] if checkpoints else None


def prune_checkpoints(run_dir: Path, keep: int) -> None:
    """Delete all but the newest ``keep`` checkpoints."""
    for path in list_checkpoints(run_dir)[:-keep]:
        path.unlink(missing_ok=True)


def load_checkpoint(path: Path, key: str = "train.resume") -> dict[str, Any]:
    """Read a training checkpoint (on the CPU); a missing, unreadable (empty, truncated) file or one
    whose network holds NaN/inf is a one-line CheckpointError."""
    state = load_file(path, key)
    if not isinstance(state, dict) or "network" not in state or "iteration" not in state:
        raise CheckpointError(f"{key}: {path} is not a training checkpoint (no network/iteration entries)")
    check_finite(state["network"], f"{key}: {path}")
    return state


def capture_rng_state(generator: torch.Generator) -> dict[str, Any]:
    """The state of Python's, NumPy's and torch's global RNGs (CPU and the current CUDA device)
    and of ``generator``."""
    kind, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "position": int(position),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached_gaussian),
        },
        "torch": torch.get_rng_state(),
        "generator": generator.get_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def restore_rng_state(state: dict[str, Any], generator: torch.Generator) -> None:
    """Undo :func:`capture_rng_state`: set every RNG (and ``generator``) back to ``state``."""
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    numpy_state = state["numpy"]
    np.random.set_state(
        (
            numpy_state["kind"],
            numpy_state["keys"].numpy().astype(np.uint32),
            numpy_state["position"],
            numpy_state["has_gauss"],
            numpy_state["cached_gaussian"],
        )
    )
    torch.set_rng_state(state["torch"])
    generator.set_state(state["generator"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])
