"""Pixel memory of one video: permanent, working and long-term tokens, grouped in buckets.

A *token* is one stride-16 position of one memorised frame: a key (CK), a shrinkage (1), a
selection (CK, needed only while it may be consolidated) and one value (CV) per object.

Buckets: the objects first memorised on the same frame share one bucket (their keys are
identical); an object added later starts a new bucket, because it has no values for the frames
memorised before it. Every bucket holds three segments:

- ``permanent``: the bucket's first memorised frame (plus frames written with ``permanent=True``);
  never evicted, never consolidated;
- ``working``: the most recent frames, first in first out;
- ``long_term`` (with ``use_long_term``): prototypes consolidated from old working tokens.

Segments are separate tensors, so a permanent write can never land in the wrong place.

Bounds per bucket (``HW`` = tokens per frame): working <= (max_mem_frames - 1) * HW tokens, long-term
<= max_num_tokens. Without long-term memory, the oldest working frame is dropped when the working
memory would exceed ``max_mem_frames - 1`` frames. With it (the authors' code's boundaries), as soon
as the working memory reaches ``long_term.max_mem_frames - 1`` frames, all but the newest
``long_term.min_mem_frames - 1`` frames are consolidated: the ``num_prototypes`` most used tokens
(per batch element) become prototype keys, and their values and shrinkage are read out of the
consolidated tokens with a full softmax. Before that, a long-term memory that has reached
``max_num_tokens - num_prototypes`` tokens keeps only its most used ones
(``max_num_tokens - num_prototypes - buffer_tokens``).

Usage of a token = summed top-k affinity it received over reads / number of reads it was part of;
a new prototype starts unused (0), as in the authors' code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

from s3.config.inference import InferenceConfig
from s3.model.memory.readout import affinity_from_similarity, anisotropic_l2_similarity, readout_values


def _gather_tokens(x: Tensor, index: Tensor) -> Tensor:
    """x: (B, ..., M), index: (B, m) -> (B, ..., m), per batch element."""
    view = index.view(index.shape[0], *([1] * (x.dim() - 2)), index.shape[1])
    return torch.gather(x, -1, view.expand(*x.shape[:-1], index.shape[1]))


@dataclass
class TokenSegment:
    """A run of memory tokens of one bucket (all tensors share the last axis M)."""

    key: Tensor  # (B, CK, M)
    shrinkage: Tensor  # (B, 1, M)
    values: Tensor  # (B, n, CV, M), n = objects of the bucket
    selection: Optional[Tensor] = None  # (B, CK, M); kept in the working memory only
    use_count: Optional[Tensor] = None  # (B, M); working and long-term memory only
    life_count: Optional[Tensor] = None  # (B, M)

    @property
    def size(self) -> int:
        return self.key.shape[-1]

    def _fields(self) -> dict[str, Optional[Tensor]]:
        return {
            "key": self.key,
            "shrinkage": self.shrinkage,
            "values": self.values,
            "selection": self.selection,
            "use_count": self.use_count,
            "life_count": self.life_count,
        }

    def append(self, other: TokenSegment) -> TokenSegment:
        """Tokens of ``self`` followed by those of ``other`` (same fields present)."""
        merged = {}
        for name, mine in self._fields().items():
            theirs = getattr(other, name)
            if (mine is None) != (theirs is None):
                raise ValueError(f"TokenSegment.append: field {name} is present on one side only")
            merged[name] = None if mine is None else torch.cat([mine, theirs], dim=-1)
        return TokenSegment(**merged)

    def slice(self, start: int, stop: Optional[int] = None) -> TokenSegment:
        """Tokens [start, stop) (the same for every batch element)."""
        return TokenSegment(**{k: None if v is None else v[..., start:stop] for k, v in self._fields().items()})

    def gather(self, index: Tensor) -> TokenSegment:
        """Tokens ``index`` (B, m), chosen per batch element."""
        return TokenSegment(**{k: None if v is None else _gather_tokens(v, index) for k, v in self._fields().items()})

    def keep_objects(self, positions: list[int]) -> TokenSegment:
        """Only the values of the bucket objects at ``positions``."""
        fields = self._fields()
        fields["values"] = self.values[:, positions]
        return TokenSegment(**fields)

    def normalised_usage(self) -> Tensor:
        """(B, M) use count per read (0 for tokens never read)."""
        assert self.use_count is not None and self.life_count is not None
        return self.use_count / self.life_count.clamp(min=1)


def frame_tokens(
    key: Tensor, shrinkage: Tensor, selection: Tensor, values: Tensor, with_usage: bool, with_selection: bool
) -> TokenSegment:
    """One frame as a segment: key/selection (B, CK, h, w), shrinkage (B, 1, h, w), values (B, n, CV, h, w)."""
    b, m = key.shape[0], key.shape[-2] * key.shape[-1]
    zeros = key.new_zeros(b, m)
    return TokenSegment(
        key=key.flatten(2),
        shrinkage=shrinkage.flatten(2),
        values=values.flatten(3),
        selection=selection.flatten(2) if with_selection else None,
        use_count=zeros if with_usage else None,
        life_count=zeros.clone() if with_usage else None,
    )


@dataclass
class MemoryBucket:
    """The memory of the objects first memorised together."""

    object_ids: list[int]
    permanent: TokenSegment
    working: Optional[TokenSegment] = None
    long_term: Optional[TokenSegment] = None

    def segments(self) -> list[TokenSegment]:
        """Non-empty segments in reading order: long-term, permanent, working."""
        return [s for s in (self.long_term, self.permanent, self.working) if s is not None and s.size > 0]

    @property
    def num_tokens(self) -> int:
        return sum(s.size for s in self.segments())


class PixelMemory:
    """The key-value pixel memory of one video (see the module docstring)."""

    def __init__(self, config: InferenceConfig) -> None:
        self.config = config
        self.buckets: list[MemoryBucket] = []
        self.tokens_per_frame = 0

    # ------------------------------------------------------------------ inspection
    @property
    def object_ids(self) -> list[int]:
        return [i for bucket in self.buckets for i in bucket.object_ids]

    @property
    def num_tokens(self) -> int:
        """Tokens over all buckets and segments (a key shared by a bucket's objects counts once)."""
        return sum(b.num_tokens for b in self.buckets)

    def token_budget(self) -> int:
        """The most tokens the non-permanent memory of all buckets can hold."""
        per_bucket = self._max_working_frames() * self.tokens_per_frame
        if self.config.use_long_term:
            per_bucket += self.config.long_term.max_num_tokens
        return per_bucket * len(self.buckets)

    def num_permanent_tokens(self) -> int:
        return sum(b.permanent.size for b in self.buckets)

    def _max_working_frames(self) -> int:
        frames = self.config.long_term.max_mem_frames if self.config.use_long_term else self.config.max_mem_frames
        return frames - 1

    # ------------------------------------------------------------------ writing
    def add(
        self,
        key: Tensor,
        shrinkage: Tensor,
        selection: Tensor,
        values: Tensor,
        object_ids: list[int],
        permanent: bool = False,
    ) -> None:
        """Memorise one frame.

        key, selection: (B, CK, h, w); shrinkage: (B, 1, h, w); values: (B, N, CV, h, w) for
        ``object_ids`` (N ids). Objects not yet in memory open a new bucket whose permanent memory
        is this frame; the others get the frame in their bucket's working memory (or permanent
        memory with ``permanent``).
        """
        if values.shape[1] != len(object_ids):
            raise ValueError(f"PixelMemory.add: {values.shape[1]} value maps for {len(object_ids)} object ids")
        hw = key.shape[-2] * key.shape[-1]
        if self.tokens_per_frame and hw != self.tokens_per_frame:
            raise ValueError(f"PixelMemory.add: frame has {hw} tokens, memory holds frames of {self.tokens_per_frame}")
        self.tokens_per_frame = hw
        position = {obj: i for i, obj in enumerate(object_ids)}
        known = set(self.object_ids)
        usage = self.config.use_long_term
        for bucket in self.buckets:
            missing = [o for o in bucket.object_ids if o not in position]
            if missing:
                raise ValueError(f"PixelMemory.add: no values given for memorised objects {missing}")
            frame = frame_tokens(key, shrinkage, selection, values[:, [position[o] for o in bucket.object_ids]],
                                 with_usage=usage, with_selection=usage)
            if permanent:
                bucket.permanent = bucket.permanent.append(_without_usage(frame))
            else:
                bucket.working = frame if bucket.working is None else bucket.working.append(frame)
                self._bound_working_memory(bucket)
        new_ids = [o for o in object_ids if o not in known]
        if new_ids:
            frame = frame_tokens(key, shrinkage, selection, values[:, [position[o] for o in new_ids]],
                                 with_usage=False, with_selection=False)
            self.buckets.append(MemoryBucket(object_ids=new_ids, permanent=frame))

    def _bound_working_memory(self, bucket: MemoryBucket) -> None:
        assert bucket.working is not None
        limit = self._max_working_frames() * self.tokens_per_frame
        if not self.config.use_long_term:
            if bucket.working.size > limit:
                bucket.working = bucket.working.slice(bucket.working.size - limit)
            return
        if bucket.working.size < limit:
            return
        keep = (self.config.long_term.min_mem_frames - 1) * self.tokens_per_frame
        split = bucket.working.size - keep
        candidates, bucket.working = bucket.working.slice(0, split), bucket.working.slice(split)
        self._consolidate(bucket, candidates)

    def _consolidate(self, bucket: MemoryBucket, candidates: TokenSegment) -> None:
        """Turn ``candidates`` (old working tokens) into prototypes appended to the long-term memory."""
        lt = self.config.long_term
        num_prototypes = min(lt.num_prototypes, candidates.size)
        usage = candidates.normalised_usage()
        chosen = torch.topk(usage, k=num_prototypes, dim=-1).indices  # (B, P)
        prototype_key = _gather_tokens(candidates.key, chosen)
        assert candidates.selection is not None
        prototype_selection = _gather_tokens(candidates.selection, chosen)
        similarity = anisotropic_l2_similarity(candidates.key, candidates.shrinkage, prototype_key, prototype_selection)
        affinity, _ = affinity_from_similarity(similarity, top_k=None)  # (B, M_candidates, P)
        prototype_values = readout_values(affinity, candidates.values)  # (B, n, CV, P)
        prototype_shrinkage = readout_values(affinity, candidates.shrinkage.unsqueeze(1)).squeeze(1)  # (B, 1, P)
        prototypes = TokenSegment(
            key=prototype_key,
            shrinkage=prototype_shrinkage,
            values=prototype_values.to(candidates.values.dtype),
            use_count=torch.zeros_like(chosen, dtype=usage.dtype),  # a prototype starts unused
            life_count=torch.zeros_like(chosen, dtype=usage.dtype),
        )
        long_term = bucket.long_term
        if long_term is not None and long_term.size >= lt.max_num_tokens - num_prototypes:
            keep = max(lt.max_num_tokens - num_prototypes - lt.buffer_tokens, 0)
            kept = torch.topk(long_term.normalised_usage(), k=min(keep, long_term.size), dim=-1).indices
            long_term = long_term.gather(kept.sort(dim=-1).values)
        bucket.long_term = prototypes if long_term is None else long_term.append(prototypes)

    # ------------------------------------------------------------------ reading
    def read(self, query_key: Tensor, query_selection: Tensor, object_ids: list[int], top_k: int) -> Tensor:
        """Top-k readout for ``object_ids``.

        query_key, query_selection: (B, CK, h, w) -> (B, N, CV, h, w) in the order of ``object_ids``;
        objects without memory read zeros. Updates the usage counts of the read tokens.
        """
        b, _, h, w = query_key.shape
        out: Optional[Tensor] = None
        position = {obj: i for i, obj in enumerate(object_ids)}
        for bucket in self.buckets:
            wanted = [(i, position[o]) for i, o in enumerate(bucket.object_ids) if o in position]
            if not wanted:
                continue
            segments = bucket.segments()
            mem_key = torch.cat([s.key for s in segments], dim=-1)
            mem_shrinkage = torch.cat([s.shrinkage for s in segments], dim=-1)
            similarity = anisotropic_l2_similarity(mem_key, mem_shrinkage, query_key.flatten(2), query_selection.flatten(2))
            affinity, usage = affinity_from_similarity(similarity, top_k)
            values = torch.cat([s.values[:, [i for i, _ in wanted]] for s in segments], dim=-1)
            readout = readout_values(affinity, values).view(b, len(wanted), -1, h, w)
            if out is None:
                out = readout.new_zeros(b, len(object_ids), readout.shape[2], h, w)
            out[:, [p for _, p in wanted]] = readout.to(out.dtype)
            if self.config.use_long_term and usage is not None:
                self._count_usage(segments, usage)
        if out is None:
            raise ValueError("PixelMemory.read: none of the requested objects is in memory")
        return out

    @staticmethod
    def _count_usage(segments: list[TokenSegment], usage: Tensor) -> None:
        start = 0
        for segment in segments:
            stop = start + segment.size
            if segment.use_count is not None and segment.life_count is not None:
                segment.use_count += usage[:, start:stop]
                segment.life_count += 1
            start = stop

    def clear_non_permanent(self) -> None:
        """Drop the working and long-term tokens of every bucket; the permanent ones stay."""
        for bucket in self.buckets:
            bucket.working = None
            bucket.long_term = None

    # ------------------------------------------------------------------ objects
    def remove_objects(self, object_ids: list[int]) -> None:
        """Forget the memory values of ``object_ids``; buckets left without objects are dropped."""
        gone = set(object_ids)
        buckets = []
        for bucket in self.buckets:
            positions = [i for i, o in enumerate(bucket.object_ids) if o not in gone]
            if not positions:
                continue
            if len(positions) < len(bucket.object_ids):
                bucket.object_ids = [bucket.object_ids[i] for i in positions]
                bucket.permanent = bucket.permanent.keep_objects(positions)
                if bucket.working is not None:
                    bucket.working = bucket.working.keep_objects(positions)
                if bucket.long_term is not None:
                    bucket.long_term = bucket.long_term.keep_objects(positions)
            buckets.append(bucket)
        self.buckets = buckets


def _without_usage(segment: TokenSegment) -> TokenSegment:
    return TokenSegment(key=segment.key, shrinkage=segment.shrinkage, values=segment.values)
