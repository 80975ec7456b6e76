"""Reading checkpoint files and strict state-dict loading with readable errors."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

# Containers that checkpoint files commonly wrap their weights in, tried in this order.
_CONTAINER_KEYS = ("model", "state_dict", "weights", "network")


class CheckpointError(ValueError):
    """A checkpoint file is missing, unreadable, or does not fit the model."""


def read_state_dict(path: str | None, key: str) -> dict[str, Tensor]:
    """Load a tensor dict from a local file (``torch.load(..., weights_only=True)``).

    ``key`` is the config key that named the file; it is quoted in every error. Common wrappers
    (``{"model": ...}``, ``{"state_dict": ...}``, trainer checkpoints with ``weights``) are unwrapped.
    """
    if not path:
        raise CheckpointError(f"{key}: no file given")
    file = Path(path).expanduser()
    if not file.is_file():
        raise CheckpointError(f"{key}: file not found: {file}")
    try:
        obj = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle errors, truncated files, non-tensor payloads
        raise CheckpointError(f"{key}: cannot read {file}: {str(err).splitlines()[0]}") from err
    while isinstance(obj, Mapping) and not _is_tensor_dict(obj):
        inner = next((obj[k] for k in _CONTAINER_KEYS if k in obj and isinstance(obj[k], Mapping)), None)
        if inner is None:
            raise CheckpointError(f"{key}: {file} holds no state dict (top-level keys: {sorted(obj)[:8]})")
        obj = inner
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{key}: {file} holds a {type(obj).__name__}, not a state dict")
    return dict(obj)


def _is_tensor_dict(obj: Mapping) -> bool:
    return len(obj) > 0 and all(isinstance(v, Tensor) for v in obj.values())


def _first(names: list[str], limit: int = 5) -> str:
    more = f" (+{len(names) - limit} more)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def load_strict(
    module: nn.Module,
    state_dict: Mapping[str, Tensor],
    source: str,
    allow_missing: tuple[str, ...] = (),
) -> None:
    """Load ``state_dict`` into ``module``; any missing, unexpected or mis-shaped entry is an error.

    ``allow_missing`` lists name prefixes that may be absent (they keep their current values).
    The error lists the first few offending names for each kind of problem.
    """
    own = module.state_dict()
    missing = [k for k in own if k not in state_dict and not k.startswith(allow_missing)]
    unexpected = [k for k in state_dict if k not in own]
    mismatched = [
        f"{k} {tuple(state_dict[k].shape)} vs {tuple(own[k].shape)}"
        for k in own
        if k in state_dict and state_dict[k].shape != own[k].shape
    ]
    problems = []
    if missing:
        problems.append(f"missing keys: {_first(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_first(unexpected)}")
    if mismatched:
        problems.append(f"shape mismatches (file vs model): {_first(mismatched)}")
    if problems:
        raise CheckpointError(f"{source}: " + "; ".join(problems))
    module.load_state_dict({k: v for k, v in state_dict.items()}, strict=False)
