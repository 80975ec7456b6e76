"""Object tokens F_o (paper eq. 5): one token per object from its temporal-memory values."""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn
from torch import Tensor


class ObjectTokenizer(nn.Module):
    """F_o = ``proj``(max over all memorised positions of the object's values) + ``embedding``.

    ``shared`` keeps one learned embedding added to every object (the tokens are then equivariant
    to permutations of the object slots); ``slot`` learns one embedding per slot index (up to
    ``num_slots`` objects). Empty slots get an all-zero token.
    """

    def __init__(self, value_dim: int, dim: int, embed: str = "shared", num_slots: int = 16) -> None:
        super().__init__()
        if embed not in ("shared", "slot"):
            raise ValueError(f"ObjectTokenizer: embed must be 'shared' or 'slot', got {embed!r}")
        self.proj = nn.Linear(value_dim, dim)
        self.embedding = nn.Parameter(torch.zeros(1 if embed == "shared" else num_slots, dim))
        nn.init.trunc_normal_(self.embedding, std=0.02)
        self.per_slot = embed == "slot"

    def forward(self, memory_value: Tensor, object_valid: Optional[Tensor] = None) -> Tensor:
        """memory_value: (B, N, CV, M) values of the M memorised positions (frames x h x w);
        object_valid: (B, N) bool, None = all real -> tokens (B, N, C), zero for empty slots."""
        if memory_value.shape[-1] == 0:
            raise ValueError("ObjectTokenizer: the temporal memory is empty (no value to pool)")
        num_objects = memory_value.shape[1]
        if self.per_slot and num_objects > self.embedding.shape[0]:
            raise ValueError(
                f"ObjectTokenizer: {num_objects} objects exceed model.object_slots={self.embedding.shape[0]}"
            )
        embedding = self.embedding[:num_objects] if self.per_slot else self.embedding
        tokens = self.proj(memory_value.amax(dim=-1)) + embedding
        if object_valid is None:
            return tokens
        return torch.where(object_valid.unsqueeze(-1), tokens, torch.zeros_like(tokens))
