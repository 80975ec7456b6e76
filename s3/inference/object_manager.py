"""Object ids (arbitrary positive integers chosen by the user) <-> internal channel indices.

Channels are contiguous: object ``ids[i]`` lives in channel ``i`` of every per-object tensor
(channel ``i + 1`` of a probability map with background). Adding appends channels; removing
closes the gaps and keeps the relative order of the remaining objects.
"""

from __future__ import annotations


class ObjectManager:
    """The ordered list of objects currently tracked."""

    def __init__(self) -> None:
        self.ids: list[int] = []

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, obj: int) -> bool:
        return obj in self.ids

    def channel(self, obj: int) -> int:
        """Channel index (0-based, without background) of object ``obj``."""
        try:
            return self.ids.index(obj)
        except ValueError:
            raise KeyError(f"ObjectManager: object {obj} is not tracked (tracked: {self.ids})") from None

    def add(self, object_ids: list[int]) -> list[int]:
        """Append the ids not tracked yet; returns those new ids in order."""
        new = []
        for obj in object_ids:
            obj = int(obj)
            if obj <= 0:
                raise ValueError(f"ObjectManager: object ids must be positive integers (0 is background), got {obj}")
            if obj not in self.ids and obj not in new:
                new.append(obj)
        self.ids.extend(new)
        return new

    def remove(self, object_ids: list[int]) -> list[int]:
        """Stop tracking ``object_ids``; returns the channel indices that were kept (for slicing tensors)."""
        unknown = [o for o in object_ids if o not in self.ids]
        if unknown:
            raise KeyError(f"ObjectManager: cannot remove untracked objects {unknown} (tracked: {self.ids})")
        kept = [i for i, o in enumerate(self.ids) if o not in set(object_ids)]
        self.ids = [self.ids[i] for i in kept]
        return kept
