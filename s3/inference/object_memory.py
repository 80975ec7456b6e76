"""Per-object state besides the pixel memory: object summaries and sensory memory.

Both stores are keyed by object id, so removing an object or re-ordering channels never mixes
up two objects; ``read`` stacks them in the order the caller asks for.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor


class ObjectSummaryStore:
    """Object (query) memory as a streaming average.

    Each memorised frame adds its summaries (B, Q, C+1): Q area-weighted feature sums followed by
    their areas. Keeping the running sums makes the query transformer's sum / area the average over
    every memorised frame (a single time step, T = 1).
    """

    def __init__(self) -> None:
        self.sums: dict[int, Tensor] = {}

    def add(self, summaries: Tensor, object_ids: list[int]) -> None:
        """summaries: (B, N, Q, C+1) for ``object_ids`` (N ids)."""
        if summaries.shape[1] != len(object_ids):
            raise ValueError(f"ObjectSummaryStore.add: {summaries.shape[1]} summaries for {len(object_ids)} ids")
        for i, obj in enumerate(object_ids):
            new = summaries[:, i].float()
            self.sums[obj] = new if obj not in self.sums else self.sums[obj] + new

    def read(self, object_ids: list[int]) -> Optional[Tensor]:
        """(B, N, 1, Q, C+1) for ``object_ids``; an object never memorised reads zeros. None when no
        object has a summary yet (the network then reads an empty object memory)."""
        if not self.sums:
            return None
        zeros = torch.zeros_like(next(iter(self.sums.values())))
        return torch.stack([self.sums.get(obj, zeros) for obj in object_ids], dim=1).unsqueeze(2)

    def remove(self, object_ids: list[int]) -> None:
        for obj in object_ids:
            self.sums.pop(obj, None)


class SensoryStore:
    """Sensory memory: a (B, S, h, w) state per object, zero when the object first appears."""

    def __init__(self) -> None:
        self.states: dict[int, Tensor] = {}

    def read(self, object_ids: list[int]) -> Tensor:
        """(B, N, S, h, w) in the order of ``object_ids``."""
        return torch.stack([self.states[obj] for obj in object_ids], dim=1)

    def write(self, sensory: Tensor, object_ids: list[int]) -> None:
        """sensory: (B, N, S, h, w) for ``object_ids``."""
        for i, obj in enumerate(object_ids):
            self.states[obj] = sensory[:, i]

    def remove(self, object_ids: list[int]) -> None:
        for obj in object_ids:
            self.states.pop(obj, None)

    def reset(self) -> None:
        """Every state back to zeros (the objects stay)."""
        self.states = {obj: torch.zeros_like(state) for obj, state in self.states.items()}
