"""The streaming STMA engine: one :meth:`STMAVideoProcessor.step` per frame, with the public API of
:class:`s3.inference.VideoProcessor` (so evaluation, the submission writers, visualisation,
``propagate``, the model table and the benchmark run it unchanged).

Per frame (``t`` counts calls to ``step``):

1. the frame is downscaled so that its shorter side is at most ``max_internal_size`` (as
   ``VideoProcessor`` does: bilinear, antialiased; a given index mask nearest-neighbour) and padded
   to ``model.pad_multiple`` (with ``flip_aug``, the horizontally flipped copy joins the batch); every
   frame of a video must have one size; the stem gives its tokens X;
2. STML associates it with the *context*: the reference frames of the spatial memory and the object
   tokens pooled from the temporal memory (eq. 5). The context never reads the test frame, so its
   reference and object streams are computed once and reused until a memory changes;
3. the tracked objects are segmented, unless a given mask covers all of them: key, top-k readout of
   the temporal memory (``PixelMemory``: permanent first frames, working memory, XMem's usage-based
   long-term memory with ``use_long_term``), fusion, decoding;
4. a given mask is merged in as in ``VideoProcessor``;
5. the frame is memorised in both memories on the same schedule [A]: when a mask was given, or
   ``mem_every`` frames after the last memory frame (paper: every 3rd frame on DAVIS, 5th on
   YouTube-VOS), never at ``end`` and, unless ``memorise_empty_frames``, not when nothing is
   predicted;
6. probabilities are cropped and resized back to the input size.

``model.id_association=per_object`` (Table 1 "W/O Temporal Memory") keeps the spatial memory only
and runs STML once per object (``chunk_size`` objects at a time). ``model.stml.references=false``
(Table 1 "W/O Spatial Memory") keeps no spatial memory.

Settings: every ``InferenceConfig`` key is honoured, except two that describe parts of S3 STMA does
not have: ``stagger_updates`` paces S3's sensory-memory updates (STMA has no sensory memory), and
``object_groups`` chooses which objects S3's query transformer compares (STMA always associates every
tracked object together: they self-attend in STML and each one's mask encoding sees all the others).
``compile`` is for whoever builds the engine: ``s3.model.compile.compile_network`` compiles
``STMANetwork``'s children like S3's.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import Tensor

from s3.config.inference import InferenceConfig
from s3.inference.memory_store import PixelMemory
from s3.inference.streaming import StreamingEngine, background_only
from s3.stma.convvit import StemOutput
from s3.stma.network import AssociationContext, FrameFeatures, STMANetwork
from s3.stma.spatial_memory import SpatialMemory


class STMAVideoProcessor(StreamingEngine):
    """Streaming semi-supervised VOS over one video with STMA (see the module docstring).

    Attributes as ``VideoProcessor``: ``network``, ``device``, ``config``, ``frame_size``,
    ``padded_size``, ``object_ids``; ``memory`` is the temporal memory (None with ``per_object``) and
    ``spatial_memory`` the reference frames.
    """

    network: STMANetwork

    # ------------------------------------------------------------------ controls
    def clear_memory(self) -> None:
        """Forget the video: both memories, the tracked objects, the frame count and the frame size
        (the next ``step`` starts a new video, with a mask)."""
        super().clear_memory()
        cfg = self.network.cfg
        self.memory: Optional[PixelMemory] = PixelMemory(self.config) if cfg.id_association == "memory" else None
        self.spatial_memory = SpatialMemory(cfg.spatial_memory_size)
        self._context: Optional[AssociationContext] = None  # cached while both memories are unchanged

    def clear_non_permanent_memory(self) -> None:
        """Keep only what is never evicted: each object's first memory frame in the temporal memory
        (and frames written ``permanent``), the pinned frames of the spatial memory."""
        if self.memory is not None:
            self.memory.clear_non_permanent()
        self.spatial_memory.clear_non_permanent()
        self._context = None

    def clear_sensory_memory(self) -> None:
        """Nothing to do: STMA has no sensory memory (kept so that every engine has the same API)."""

    def _settings_changed(self, config: InferenceConfig) -> None:
        if self.memory is not None:
            self.memory.config = config

    def remove_objects(self, object_ids: Sequence[int]) -> None:
        """Stop tracking ``object_ids`` and purge them from both memories (a frame pinned only as
        their first appearance becomes an ordinary FIFO frame)."""
        ids = [int(o) for o in object_ids]
        self.objects.remove(ids)
        if self.memory is not None:
            self.memory.remove_objects(ids)
        self.spatial_memory.remove_objects(ids)
        self._context = None

    # ------------------------------------------------------------------ steps
    def _process(
        self, views: Tensor, given: Optional[Tensor], given_ids: list[int], *, end: bool, permanent: bool
    ) -> tuple[Tensor, bool]:
        net = self.network
        stem = net.encode_stem(views)
        known = list(self.objects.ids)
        segment_now = bool(known) and (given is None or any(o not in given_ids for o in known))
        features: Optional[FrameFeatures] = None
        keys: Optional[tuple[Tensor, Tensor, Tensor]] = None
        if self.memory is None:
            prob = self._segment_per_object(stem) if segment_now and len(self.spatial_memory) else None
        else:
            features = net.associate(stem, self._association_context())
            keys = self._keys(features.f16)
            key, _, selection = keys
            prob = self._segment(features, key, selection) if segment_now else None
        if prob is None:
            prob = background_only(len(known), views.shape[-2:], views)
        new_ids: list[int] = []
        if given is not None:
            new_ids = self.objects.add(given_ids)
            prob = self._merge_given(prob, given, given_ids)
            if new_ids:
                self._context = None  # the reference masks gain channels

        memorise = self._should_memorise(prob, given is not None, end)
        if memorise:
            pin = permanent and given is not None
            self._memorise(views, stem, features, keys, self._as_views(prob[1:]), new_ids, pin)
        return prob, memorise

    # ------------------------------------------------------------------ association and segmentation
    def _association_context(self) -> Optional[AssociationContext]:
        """The references and object tokens of the current memories (None before the first memory
        frame: plain self-attention), computed once per memory state."""
        if self._context is None and (len(self.spatial_memory) or self._objects_in_memory()):
            net = self.network
            references = None
            if len(self.spatial_memory):
                tokens, masks = self.spatial_memory.read(self.objects.ids)
                references = net.prepare_references(tokens, masks)
            objects, valid = self._object_tokens()
            self._context = net.prepare_context(references, objects, valid)
        return self._context

    def _objects_in_memory(self) -> bool:
        return self.memory is not None and bool(self.memory.object_ids)

    def _object_tokens(self) -> tuple[Optional[Tensor], Optional[Tensor]]:
        """Object tokens (V, K, C) of the tracked objects (eq. 5: each object's memorised values
        max-pooled over every token of its temporal memory) and their validity (V, K): an object
        without memory gets an empty slot. (None, None) without objects or temporal memory."""
        ids = self.objects.ids
        if not self._objects_in_memory() or not ids:
            return None, None
        assert self.memory is not None
        pooled: dict[int, Tensor] = {}
        for bucket in self.memory.buckets:
            segment_maxima = torch.stack([s.values.amax(dim=-1) for s in bucket.segments()])  # (S, V, n, CV)
            for position, obj in enumerate(bucket.object_ids):
                pooled[obj] = segment_maxima[:, :, position].amax(dim=0)  # (V, CV)
        reference = next(iter(pooled.values()))
        values = torch.stack([pooled.get(o, torch.zeros_like(reference)) for o in ids], dim=1)  # (V, K, CV)
        valid = torch.tensor([o in pooled for o in ids], device=values.device).expand(values.shape[0], -1)
        return self.network.object_tokens(values.unsqueeze(-1), valid), valid

    def _keys(self, f16: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """key (V, CK, h, w), shrinkage (V, 1, h, w), selection (V, CK, h, w) of a frame; with
        ``model.key_dim=null`` the raw feature with unit shrinkage and selection (the same readout)."""
        key, shrinkage, selection = self.network.transform_key(f16)
        if shrinkage is None or selection is None:
            shrinkage, selection = key.new_ones(key.shape[0], 1, *key.shape[-2:]), torch.ones_like(key)
        return key, shrinkage, selection

    def _segment(self, features: FrameFeatures, key: Tensor, selection: Tensor) -> Tensor:
        """Segment every tracked object from the temporal memory -> prob (K+1, H', W')."""
        assert self.memory is not None
        net, ids, cfg = self.network, self.objects.ids, self.config
        if any(o in self.memory.object_ids for o in ids):
            readout = self.memory.read(key, selection, ids, cfg.top_k)
        else:
            readout = key.new_zeros(key.shape[0], len(ids), net.cfg.value_dim, *key.shape[-2:])
        _, prob = net.segment(features, net.fuse(features.pix_feat, readout), chunk_size=cfg.chunk_size)
        return self._merge_views(prob.float())

    def _segment_per_object(self, stem: StemOutput) -> Tensor:
        """``per_object``: one STML pass per object (``chunk_size`` objects at a time) -> prob (K+1, H', W')."""
        net, num_objects = self.network, len(self.objects)
        tokens, masks = self.spatial_memory.read(self.objects.ids)
        assert masks is not None
        chunk = num_objects if self.config.chunk_size < 1 else self.config.chunk_size
        parts = [
            net.associate_per_object(stem, tokens, masks[:, :, start : start + chunk])
            for start in range(0, num_objects, chunk)
        ]
        _, prob = net.segment_per_object(_object_major(parts, tokens.shape[0]), num_objects)
        return self._merge_views(prob.float())

    # ------------------------------------------------------------------ memorising
    def _memorise(
        self,
        views: Tensor,
        stem: StemOutput,
        features: Optional[FrameFeatures],
        keys: Optional[tuple[Tensor, Tensor, Tensor]],
        masks: Tensor,
        new_ids: list[int],
        permanent: bool,
    ) -> None:
        """Write the frame (views (V, 3, H', W'), its soft masks (V, K, H', W')) to both memories."""
        net, ids = self.network, self.objects.ids
        if net.cfg.stml.references:
            kept_masks = masks if net.mask_embed is not None else None
            self.spatial_memory.add(stem.tokens, kept_masks, ids, new_ids, permanent)
        if self.memory is not None:
            assert features is not None and keys is not None
            value = net.encode_mask(views, features.pix_feat, masks, chunk_size=self.config.chunk_size)
            self.memory.add(*keys, value, ids, permanent=permanent)
        self.last_memory_index = self.frame_index
        self._context = None


def _object_major(parts: list[FrameFeatures], views: int) -> FrameFeatures:
    """Per-object features of object chunks, each (V * n_c, ...) view-major, -> one (V * K, ...)
    in the order :meth:`STMANetwork.segment_per_object` reads (index v * K + k)."""
    if len(parts) == 1:
        return parts[0]

    def join(tensors: list[Tensor]) -> Tensor:
        return torch.cat([x.unflatten(0, (views, -1)) for x in tensors], dim=1).flatten(0, 1)

    return FrameFeatures(
        f16=join([p.f16 for p in parts]),
        f8=join([p.f8 for p in parts]),
        f4=join([p.f4 for p in parts]),
        pix_feat=join([p.pix_feat for p in parts]),
    )

