"""The spatial memory of the STMA engine: the reference frames STML associates each test frame with.

Paper 3.3: after a frame is predicted it enters a first-in-first-out queue, and the frame where an
object first appears is never discarded. A frame is kept as its stem tokens X (the input of the
transformer blocks, so the stem never runs twice on a frame) and, when the network embeds
reference masks (``model.reference_mask_embed``, ``model.id_association=per_object``), the soft
masks of the objects tracked then.

Capacity: ``model.spatial_memory_size`` frames [A: the paper gives none; 3 = the first frame and
the two latest, as training sees 2 references]. Pinned frames (an object's first appearance, or a
frame written ``permanent``) count towards the capacity and are never evicted: when a frame comes
in, the oldest unpinned frames leave until the memory fits, so with more pinned frames than the
capacity only the pinned frames stay.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Optional

import torch
from torch import Tensor


@dataclass
class ReferenceFrame:
    """One memorised frame."""

    tokens: Tensor  # (V, L, C) stem tokens X, V = 2 views with flip_aug else 1
    masks: Optional[Tensor]  # (V, K, H, W) soft masks of object_ids, or None when not kept
    object_ids: list[int]  # the objects of the masks' channels
    first_appearance_of: set[int] = field(default_factory=set)  # objects that first appeared here
    permanent: bool = False

    @property
    def pinned(self) -> bool:
        return self.permanent or bool(self.first_appearance_of)


class SpatialMemory:
    """The reference frames of one video, oldest first (see the module docstring)."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"SpatialMemory: capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self.frames: list[ReferenceFrame] = []

    def __len__(self) -> int:
        return len(self.frames)

    def add(
        self,
        tokens: Tensor,
        masks: Optional[Tensor],
        object_ids: Sequence[int],
        first_appearance_of: Sequence[int] = (),
        permanent: bool = False,
    ) -> None:
        """Memorise a frame: tokens (V, L, C); masks (V, K, H, W) of ``object_ids`` (K ids) or None;
        ``first_appearance_of``: the objects seen here for the first time (the frame is pinned for
        them). Then evict down to the capacity."""
        if masks is not None and masks.shape[1] != len(object_ids):
            raise ValueError(f"SpatialMemory.add: {masks.shape[1]} masks for {len(object_ids)} object ids")
        if self.frames and tokens.shape != self.frames[0].tokens.shape:
            raise ValueError(
                f"SpatialMemory.add: tokens {tuple(tokens.shape)} differ from the memorised "
                f"{tuple(self.frames[0].tokens.shape)}"
            )
        self.frames.append(
            ReferenceFrame(tokens, masks, list(object_ids), set(first_appearance_of), permanent)
        )
        self._evict()

    def read(self, object_ids: Sequence[int]) -> tuple[Tensor, Optional[Tensor]]:
        """The references for ``object_ids`` (K ids): tokens (V, m, L, C) and masks (V, m, K, H, W)
        (zeros for an object a frame has no mask of; None when masks are not kept), oldest first."""
        if not self.frames:
            raise ValueError("SpatialMemory.read: the memory is empty")
        tokens = torch.stack([f.tokens for f in self.frames], dim=1)
        if any(f.masks is None for f in self.frames):
            return tokens, None
        per_frame = []
        for frame in self.frames:
            assert frame.masks is not None
            zeros = frame.masks.new_zeros(frame.masks.shape[0], *frame.masks.shape[2:])
            channels = [frame.masks[:, frame.object_ids.index(o)] if o in frame.object_ids else zeros for o in object_ids]
            per_frame.append(torch.stack(channels, dim=1) if channels else frame.masks[:, :0])
        return tokens, torch.stack(per_frame, dim=1)

    def remove_objects(self, object_ids: Sequence[int]) -> None:
        """Forget ``object_ids``: their masks, and the pins of their first appearances (a frame left
        unpinned becomes an ordinary FIFO frame); then evict down to the capacity."""
        gone = set(object_ids)
        for frame in self.frames:
            frame.first_appearance_of -= gone
            kept = [i for i, o in enumerate(frame.object_ids) if o not in gone]
            if len(kept) < len(frame.object_ids):
                frame.object_ids = [frame.object_ids[i] for i in kept]
                frame.masks = None if frame.masks is None else frame.masks[:, kept]
        self._evict()

    def clear_non_permanent(self) -> None:
        """Keep the pinned frames only."""
        self.frames = [f for f in self.frames if f.pinned]

    def _evict(self) -> None:
        while len(self.frames) > self.capacity:
            oldest = next((i for i, f in enumerate(self.frames) if not f.pinned), None)
            if oldest is None:
                return
            del self.frames[oldest]
