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

The network owns no state; this class holds the pixel memory, object summaries, sensory memory and
the last mask, and strings the network's steps together (:meth:`S3Network.segment_frame` is the
per-frame step). Between frames, the memories can be cleared (``clear_memory``,
``clear_non_permanent_memory``, ``clear_sensory_memory``) and the settings changed
(``update_config``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from s3.config.inference import InferenceConfig
from s3.config.validation import ConfigError
from s3.inference.memory_store import PixelMemory
from s3.inference.object_manager import ObjectManager
from s3.inference.object_memory import ObjectSummaryStore, SensoryStore
from s3.model.aggregation import soft_aggregate
from s3.model.network import ImageFeatures, S3Network
from s3.model.padding import pad_to_multiple, unpad
from s3.model.precision import autocast, autocast_dtype

# Settings fixed for the whole video: the memories hold flipped views, padded frames and usage counts.
FIXED_PER_VIDEO = ("flip_aug", "max_internal_size", "use_long_term")


@dataclass
class FramePrediction:
    """The output of one step."""

    probabilities: Tensor  # (K+1, H, W); channel 0 background, channel i+1 = object_ids[i]
    object_ids: list[int]
    memorised: bool  # whether this frame was written to memory

    def id_mask(self) -> Tensor:
        """Argmax as object ids: (H, W) int64, 0 = background."""
        lookup = torch.tensor([0, *self.object_ids], dtype=torch.int64, device=self.probabilities.device)
        return lookup[self.probabilities.argmax(dim=0)]

    def probability_of(self, obj: int) -> Tensor:
        """(H, W) probability of object ``obj``."""
        return self.probabilities[self.object_ids.index(obj) + 1]


def sensory_update_offsets(mem_every: int, stagger_updates: int) -> frozenset[int]:
    """Frame offsets after a memory frame at which the decoder updates the sensory memory.

    All of 1..mem_every when ``stagger_updates >= mem_every``, else ``stagger_updates`` evenly
    spread offsets (mem_every 10, 5 updates -> {1, 3, 6, 8, 10}).
    """
    if stagger_updates >= mem_every:
        return frozenset(range(1, mem_every + 1))
    return frozenset(int(x) for x in np.round(np.linspace(1, mem_every, stagger_updates)))


def internal_size(height: int, width: int, max_size: int) -> tuple[int, int]:
    """The processing size: the shorter side downscaled to ``max_size``, the longer one to
    ``int(max_size * longer / shorter)`` as torchvision's ``Resize`` (the authors' evaluation);
    never upscaled; -1: off."""
    shorter = min(height, width)
    if max_size <= 0 or shorter <= max_size:
        return height, width
    return max(1, int(max_size * height / shorter)), max(1, int(max_size * width / shorter))


def masks_from_input(
    mask: Tensor, objects: Optional[Sequence[int]], size: tuple[int, int]
) -> tuple[Tensor, list[int]]:
    """A given mask as per-object soft masks (n, H, W) float and their ids.

    ``mask`` is an index mask (H, W) of object ids (``objects`` defaults to its non-zero ids; a
    listed id with no pixel means "absent here") or per-object masks (n, H, W) with ``objects`` the
    n ids.
    """
    if tuple(mask.shape[-2:]) != tuple(size):
        raise ValueError(f"VideoProcessor.step: mask size {tuple(mask.shape[-2:])} != image size {tuple(size)}")
    if mask.dim() == 2:
        ids = [int(i) for i in torch.unique(mask).tolist() if i != 0] if objects is None else [int(o) for o in objects]
        stacked = torch.stack([(mask == i) for i in ids]).float() if ids else mask.new_zeros(0, *size).float()
        return stacked, ids
    if mask.dim() == 3:
        if objects is None or len(objects) != mask.shape[0]:
            raise ValueError("VideoProcessor.step: per-object masks (n, H, W) need `objects` with n ids")
        return mask.float(), [int(o) for o in objects]
    raise ValueError(f"VideoProcessor.step: mask must be (H, W) ids or (n, H, W) per object, got {tuple(mask.shape)}")


class VideoProcessor:
    """Streaming semi-supervised VOS over one video (see the module docstring)."""

    def __init__(self, network: S3Network, config: InferenceConfig) -> None:
        self.network = network.eval()
        self.device = next(network.parameters()).device
        self.config = config
        self._amp_dtype = autocast_dtype(config.precision, self.device, "inference.precision")
        self.sensory_offsets = sensory_update_offsets(config.mem_every, config.stagger_updates)
        self.clear_memory()

    # ------------------------------------------------------------------ controls
    def clear_memory(self) -> None:
        """Forget the video: every memory, the tracked objects, the last mask, the frame count and
        the frame size (the next ``step`` starts a new video, with a mask)."""
        self.objects = ObjectManager()
        self.memory = PixelMemory(self.config)
        self.summaries = ObjectSummaryStore()
        self.sensory = SensoryStore()
        self.frame_index = -1
        self.last_memory_index = 0
        self.last_mask: Optional[Tensor] = None  # (V, K, H', W'), V = 2 with flip_aug else 1
        self.frame_size: Optional[tuple[int, int]] = None  # (H, W) of the video's frames
        self.padded_size: Optional[tuple[int, int]] = None
        self._pads = (0, 0, 0, 0)  # (left, right, top, bottom) of the video's frames

    def clear_non_permanent_memory(self) -> None:
        """Drop the working and long-term pixel memory of every object; keep the permanent frames
        (each object's first memory frame), the object summaries and the sensory memory."""
        self.memory.clear_non_permanent()

    def clear_sensory_memory(self) -> None:
        """Reset the sensory memory of every tracked object to zeros (as when it first appeared)."""
        self.sensory.reset()

    def update_config(self, **changes: object) -> None:
        """Change settings between frames, e.g. ``update_config(top_k=20, mem_every=10)``.

        Everything but ``flip_aug``, ``max_internal_size`` and ``use_long_term`` may change
        mid-video (those three may change before the first frame or after ``clear_memory``); memory
        bounds apply from the next memory frame on. Unknown or invalid values raise ConfigError.
        """
        known = {f.name for f in dataclasses.fields(InferenceConfig)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ConfigError(f"inference.{unknown[0]}: unknown key (valid keys: {sorted(known)})")
        started = self.frame_index >= 0
        for name in FIXED_PER_VIDEO:
            if started and name in changes and changes[name] != getattr(self.config, name):
                raise ConfigError(
                    f"inference.{name}: cannot change in the middle of a video; call clear_memory() first"
                )
        config = dataclasses.replace(self.config, **changes)  # validates
        self._amp_dtype = autocast_dtype(config.precision, self.device, "inference.precision")
        self.config = config
        self.memory.config = config
        self.sensory_offsets = sensory_update_offsets(config.mem_every, config.stagger_updates)

    @property
    def object_ids(self) -> list[int]:
        return list(self.objects.ids)

    # ------------------------------------------------------------------ public API
    @torch.inference_mode()
    def step(
        self,
        image: Tensor,
        mask: Optional[Tensor] = None,
        objects: Optional[Sequence[int]] = None,
        *,
        end: bool = False,
        permanent: bool = False,
    ) -> FramePrediction:
        """Process the next frame.

        image: (3, H, W) RGB, float in [0, 1] or uint8, the size of the video's first frame. mask:
        None, an index mask (H, W) of object ids (resized nearest-neighbour), or per-object soft masks
        (n, H, W) with ``objects`` naming them (resized bilinearly). ``end``: the last frame (never
        memorised). ``permanent``: memorise this frame permanently (with a mask only).
        Returns the probabilities (K+1, H, W) of all objects tracked after this frame.
        """
        image = self._check_image(image)
        height, width = image.shape[-2:]
        self.frame_index += 1
        given: Optional[Tensor] = None
        given_ids: list[int] = []
        if mask is not None:
            given, given_ids = masks_from_input(mask.to(self.device), objects, (height, width))
        size = internal_size(height, width, self.config.max_internal_size)
        image = self._prepare(image.unsqueeze(0), size)[0]
        if given is not None:
            given = self._prepare(given.unsqueeze(0), size, nearest=mask is not None and mask.dim() == 2)[0]
        views = torch.stack([image, image.flip(-1)]) if self.config.flip_aug else image.unsqueeze(0)

        with autocast(self.device, self._amp_dtype):
            features = self.network.encode_image(views)
            key, shrinkage, selection = self.network.transform_key(features.f16)
            assert shrinkage is not None and selection is not None
            known = list(self.objects.ids)
            if known and (mask is None or any(o not in given_ids for o in known)):
                prob = self._merge_views(self._segment(features, key, selection))
            else:
                prob = _background_only(len(known), image.shape[-2:], image)
            if given is not None:
                new_ids = self.objects.add(given_ids)
                self._extend_for_new_objects(new_ids, features)
                prob = self._merge_given(prob, given, given_ids)
            self.last_mask = self._as_views(prob[1:])

            memorise = self._should_memorise(prob, mask is not None, end)
            if memorise:
                self._memorise(views, features, key, shrinkage, selection, permanent and mask is not None)

        prob = unpad(prob, self._pads)
        if prob.shape[-2:] != (height, width):
            prob = F.interpolate(prob.unsqueeze(0), size=(height, width), mode="bilinear", align_corners=False)[0]
        return FramePrediction(prob.float(), self.object_ids, memorise)

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
    def _check_image(self, image: Tensor) -> Tensor:
        if image.dim() != 3 or image.shape[0] != 3:
            raise ValueError(f"VideoProcessor.step: image must be (3, H, W), got {tuple(image.shape)}")
        size = (image.shape[1], image.shape[2])
        if self.frame_size is None:
            self.frame_size = size
        elif size != self.frame_size:
            raise ValueError(
                f"VideoProcessor.step: frame size changed within the video ({size[0]}x{size[1]} after "
                f"{self.frame_size[0]}x{self.frame_size[1]}); resize the frames or call clear_memory() first"
            )
        if image.dtype == torch.uint8:
            image = image.float() / 255
        elif not image.is_floating_point():
            raise ValueError(f"VideoProcessor.step: image must be float in [0, 1] or uint8, got {image.dtype}")
        return image.to(self.device, torch.float32)

    def _prepare(self, x: Tensor, size: tuple[int, int], nearest: bool = False) -> Tensor:
        """Resize (1, C, H, W) to ``size`` (bilinear, antialiased; ``nearest``: nearest-neighbour with
        pixel centres aligned, as PIL's, for binary masks) and pad; the first call fixes the padding."""
        if tuple(x.shape[-2:]) != size:
            if nearest:
                x = F.interpolate(x, size=size, mode="nearest-exact")
            else:
                x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
        x, pads = pad_to_multiple(x, self.network.cfg.pad_multiple)
        if self.padded_size is None:
            self.padded_size, self._pads = tuple(x.shape[-2:]), pads
        return x

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

    def _merge_views(self, prob: Tensor) -> Tensor:
        """(V, K+1, H', W') -> (K+1, H', W'): the flipped view is flipped back and averaged in."""
        if prob.shape[0] == 1:
            return prob[0]
        return (prob[0] + prob[1].flip(-1)) / 2

    def _as_views(self, masks: Tensor) -> Tensor:
        """(K, H', W') -> (V, K, H', W') with the flipped copy for the flipped view."""
        return torch.stack([masks, masks.flip(-1)]) if self.config.flip_aug else masks.unsqueeze(0)

    def _extend_for_new_objects(self, new_ids: list[int], features: ImageFeatures) -> None:
        if new_ids:
            self.sensory.write(self.network.zero_sensory(features, len(new_ids)), new_ids)

    def _merge_given(self, prob: Tensor, given: Tensor, given_ids: list[int]) -> Tensor:
        """prob (K_old+1, H', W') over the objects tracked before this frame; given (n, H', W') for
        ``given_ids`` -> prob (K+1, H', W') over all objects tracked now."""
        num_old = prob.shape[0] - 1
        objects = prob.new_zeros(len(self.objects), *prob.shape[-2:])
        objects[:num_old] = prob[1:]
        if given.shape[0]:
            objects[:, given.sum(dim=0) > 0.5] = 0
        for i, obj in enumerate(given_ids):
            objects[self.objects.channel(obj)] = given[i]
        return torch.softmax(soft_aggregate(objects.unsqueeze(0), dim=1), dim=1)[0]

    def _should_memorise(self, prob: Tensor, mask_given: bool, end: bool) -> bool:
        if end or not len(self.objects):
            return False
        if mask_given:
            return True
        if self.frame_index - self.last_memory_index < self.config.mem_every:
            return False
        return self.config.memorise_empty_frames or bool((prob.argmax(dim=0) > 0).any())

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


def _background_only(num_objects: int, size: torch.Size, like: Tensor) -> Tensor:
    """(K+1, H, W) probabilities with everything on the background."""
    prob = like.new_zeros(num_objects + 1, *size)
    prob[0] = 1
    return prob
