"""The streaming per-video inference engine: one :meth:`VideoProcessor.step` per frame.

Per frame (``t`` counts calls to ``step``):

1. the frame is downscaled so that its shorter side is at most ``max_internal_size`` (the longer
   side truncated, as torchvision's ``Resize``; bilinear, antialiased; a given index mask
   nearest-neighbour, so it stays binary) and padded to ``model.pad_multiple`` (with ``flip_aug``,
   the horizontally flipped copy joins the batch); every frame of a video must have one size;
2. tracked objects are segmented from memory, unless a given mask covers all of them: top-k pixel
   memory readout, pixel fusion with the sensory memory and the last mask, the query transformer
   with the object memory (both per group of objects, ``object_groups``: by default the objects
   first given on the same frame, as in the authors' code), then the decoder over every object
   (the sensory memory is updated at staggered offsets after each memory frame, and on every frame
   while a memory frame is overdue);
3. a given mask is merged in: brand-new ids get new channels, given objects replace their
   prediction, and every other object's probability is zeroed where the given mask is foreground;
4. the frame is memorised when a mask was given, or ``mem_every`` frames after the last memory
   frame — but not at ``end`` and, unless ``memorise_empty_frames``, not when no pixel is predicted
   as a target (paper 4.1); a frame that is skipped leaves the next frame due;
5. probabilities are cropped and resized back to the input size.

Steps 1, 3 (the merge), 4 (the schedule) and 5, and the controls between frames (``clear_memory``,
``clear_non_permanent_memory``, ``clear_sensory_memory``, ``update_config``), are
:class:`s3.inference.streaming.StreamingEngine`'s, shared with STMA's engine. The network owns no
state; this class holds the pixel memory, object summaries, sensory memory and the last mask, and
strings the network's steps together (:meth:`S3Network.segment_frame` is the per-frame step).
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch
from torch import Tensor

from s3.config.inference import InferenceConfig
from s3.inference.memory_store import PixelMemory
from s3.inference.object_memory import ObjectSummaryStore, SensoryStore
from s3.inference.streaming import StreamingEngine, background_only
from s3.model.network import ImageFeatures, S3Network


def sensory_update_offsets(mem_every: int, stagger_updates: int) -> frozenset[int]:
    """Frame offsets after a memory frame at which the decoder updates the sensory memory.

    All of 1..mem_every when ``stagger_updates >= mem_every``, else ``stagger_updates`` evenly
    spread offsets (mem_every 10, 5 updates -> {1, 3, 6, 8, 10}).
    """
    if stagger_updates >= mem_every:
        return frozenset(range(1, mem_every + 1))
    return frozenset(int(x) for x in np.round(np.linspace(1, mem_every, stagger_updates)))


class VideoProcessor(StreamingEngine):
    """Streaming semi-supervised VOS over one video with S3 (see the module docstring); the public
    API is :class:`StreamingEngine`'s. ``memory`` is the pixel memory, ``summaries`` the object
    memory, ``sensory`` the sensory memory, ``last_mask`` (V, K, H', W') the last frame's masks."""

    def __init__(self, network: S3Network, config: InferenceConfig) -> None:
        self.sensory_offsets = sensory_update_offsets(config.mem_every, config.stagger_updates)
        super().__init__(network, config)

    # ------------------------------------------------------------------ controls
    def clear_memory(self) -> None:
        """Forget the video: every memory, the tracked objects, the last mask, the frame count and
        the frame size (the next ``step`` starts a new video, with a mask)."""
        super().clear_memory()
        self.memory = PixelMemory(self.config)
        self.summaries = ObjectSummaryStore()
        self.sensory = SensoryStore()
        self.last_mask: Optional[Tensor] = None  # (V, K, H', W'), V = 2 with flip_aug else 1

    def clear_non_permanent_memory(self) -> None:
        """Drop the working and long-term pixel memory of every object; keep the permanent frames
        (each object's first memory frame), the object summaries and the sensory memory."""
        self.memory.clear_non_permanent()

    def clear_sensory_memory(self) -> None:
        """Reset the sensory memory of every tracked object to zeros (as when it first appeared)."""
        self.sensory.reset()

    def _settings_changed(self, config: InferenceConfig) -> None:
        self.memory.config = config
        self.sensory_offsets = sensory_update_offsets(config.mem_every, config.stagger_updates)

    def remove_objects(self, object_ids: Sequence[int]) -> None:
        """Stop tracking ``object_ids`` and purge them from every memory."""
        ids = [int(o) for o in object_ids]
        kept = self.objects.remove(ids)
        self.memory.remove_objects(ids)
        self.summaries.remove(ids)
        self.sensory.remove(ids)
        if self.last_mask is not None:
            self.last_mask = self.last_mask[:, kept]

    # ------------------------------------------------------------------ steps
    def _process(
        self, views: Tensor, given: Optional[Tensor], given_ids: list[int], *, end: bool, permanent: bool
    ) -> tuple[Tensor, bool]:
        features = self.network.encode_image(views)
        key, shrinkage, selection = self.network.transform_key(features.f16)
        assert shrinkage is not None and selection is not None
        known = list(self.objects.ids)
        if known and (given is None or any(o not in given_ids for o in known)):
            prob = self._merge_views(self._segment(features, key, selection))
        else:
            prob = background_only(len(known), views.shape[-2:], views)
        if given is not None:
            new_ids = self.objects.add(given_ids)
            self._extend_for_new_objects(new_ids, features)
            prob = self._merge_given(prob, given, given_ids)
        self.last_mask = self._as_views(prob[1:])

        memorise = self._should_memorise(prob, given is not None, end)
        if memorise:
            self._memorise(views, features, key, shrinkage, selection, permanent and given is not None)
        return prob, memorise

    def _segment(self, features: ImageFeatures, key: Tensor, selection: Tensor) -> Tensor:
        """Segment all tracked objects from memory -> prob (V, K+1, H', W')."""
        cfg = self.config
        ids = self.objects.ids
        readout = None
        if any(o in self.memory.object_ids for o in ids):
            readout = self.memory.read(key, selection, ids, cfg.top_k)
        assert self.last_mask is not None
        offset = self.frame_index - self.last_memory_index
        update_sensory = offset in self.sensory_offsets or offset > cfg.mem_every
        sensory, summaries = self.sensory.read(ids), self.summaries.read(ids)
        groups = self._object_groups()
        if len(groups) == 1:
            out = self.network.segment_frame(
                features, readout, sensory, self.last_mask, summaries,
                chunk_size=cfg.chunk_size, update_sensory=update_sensory,
            )
            new_sensory, prob = out.sensory, out.prob
        else:
            assert readout is not None and summaries is not None  # a memory bucket exists
            new_sensory, prob = self._segment_by_group(groups, features, readout, sensory, summaries, update_sensory)
        if update_sensory:
            self.sensory.write(new_sensory, ids)
        return prob.float()

    def _object_groups(self) -> list[list[int]]:
        """Channel positions of the objects that go through pixel fusion and the query transformer
        together: every object (``object_groups="all"``), or the objects of each memory bucket (first
        given on the same frame) and those not memorised yet, each a group."""
        ids = self.objects.ids
        if self.config.object_groups == "all":
            return [list(range(len(ids)))]
        position = {obj: i for i, obj in enumerate(ids)}
        groups = [[position[obj] for obj in bucket.object_ids] for bucket in self.memory.buckets]
        grouped = {i for group in groups for i in group}
        groups.append([i for i in range(len(ids)) if i not in grouped])
        return [group for group in groups if group]

    def _segment_by_group(
        self,
        groups: list[list[int]],
        features: ImageFeatures,
        readout: Tensor,
        sensory: Tensor,
        summaries: Tensor,
        update_sensory: bool,
    ) -> tuple[Tensor, Tensor]:
        """The per-frame step with pixel fusion and the query transformer run per group (channel
        positions), the decoder over every object. readout (V, K, CV, h, w), sensory (V, K, S, h, w),
        summaries (V, K, 1, Q, CV+1) -> sensory (V, K, S, h, w), prob (V, K+1, H', W')."""
        net, chunk_size = self.network, self.config.chunk_size
        assert self.last_mask is not None
        parts = []
        for group in groups:
            fused = net.fuse_pixel_readout(
                features.pix_feat, readout[:, group], sensory[:, group], self.last_mask[:, group], chunk_size
            )
            parts.append(net.read_object_queries(fused, summaries[:, group])[0])
        order = torch.tensor([i for group in groups for i in group], device=readout.device)
        pixel = torch.cat(parts, dim=1)[:, torch.argsort(order)]
        new_sensory, _, prob = net.decode(
            features, pixel, sensory, chunk_size=chunk_size, update_sensory=update_sensory
        )
        return new_sensory, prob

    def _extend_for_new_objects(self, new_ids: list[int], features: ImageFeatures) -> None:
        if new_ids:
            self.sensory.write(self.network.zero_sensory(features, len(new_ids)), new_ids)

    def _memorise(
        self,
        views: Tensor,
        features: ImageFeatures,
        key: Tensor,
        shrinkage: Tensor,
        selection: Tensor,
        permanent: bool,
    ) -> None:
        ids = self.objects.ids
        assert self.last_mask is not None
        value, sensory, summaries = self.network.encode_mask(
            views, features.pix_feat, self.sensory.read(ids), self.last_mask, chunk_size=self.config.chunk_size
        )
        self.memory.add(key, shrinkage, selection, value, ids, permanent=permanent)
        self.summaries.add(summaries, ids)
        self.sensory.write(sensory, ids)
        self.last_memory_index = self.frame_index

