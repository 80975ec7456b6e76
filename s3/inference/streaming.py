"""What every architecture's streaming engine shares: the frame in, the probabilities out, the
controls, and the memory schedule.

:class:`StreamingEngine` is the public API of an engine (``step``, ``remove_objects``,
``clear_memory``, ``clear_non_permanent_memory``, ``clear_sensory_memory``, ``update_config``,
``object_ids``) and does everything around the network, the same for S3 and STMA:

1. the frame is checked (one size per video) and downscaled so that its shorter side is at most
   ``max_internal_size`` (the longer side truncated, as torchvision's ``Resize``; bilinear,
   antialiased; a given index mask nearest-neighbour, so it stays binary), then padded to
   ``model.pad_multiple``; with ``flip_aug`` the horizontally flipped copy joins the batch as a
   second view;
2. the subclass's :meth:`StreamingEngine._process` segments it from its memories under the
   precision's autocast, merges a given mask (:meth:`_merge_given`) and memorises the frame when
   :meth:`_should_memorise` says so;
3. the probabilities are cropped and resized back to the input size.

A subclass implements ``_process`` and, for the memories it owns, ``clear_memory`` (calling this
class's), ``clear_non_permanent_memory``, ``clear_sensory_memory``, ``remove_objects`` and
``_settings_changed``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from s3.config.inference import InferenceConfig
from s3.config.validation import ConfigError
from s3.inference.object_manager import ObjectManager
from s3.model.aggregation import object_id_map, soft_aggregate, winning_channel
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
        return object_id_map(self.probabilities, self.object_ids)

    def probability_of(self, obj: int) -> Tensor:
        """(H, W) probability of object ``obj``."""
        return self.probabilities[self.object_ids.index(obj) + 1]


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


def background_only(num_objects: int, size: torch.Size, like: Tensor) -> Tensor:
    """(K+1, H, W) probabilities with everything on the background."""
    prob = like.new_zeros(num_objects + 1, *size)
    prob[0] = 1
    return prob


class StreamingEngine:
    """The shared part of a streaming engine over one video (see the module docstring).

    Attributes: ``network`` (eval mode), ``device``, ``config`` (:class:`InferenceConfig`),
    ``objects`` (the tracked ids and their channels), ``frame_index`` (calls to ``step`` minus one),
    ``last_memory_index``, ``frame_size`` (H, W) and ``padded_size`` (H', W') of the video's frames.
    """

    def __init__(self, network: nn.Module, config: InferenceConfig) -> None:
        self.network = network.eval()
        self.device = next(network.parameters()).device
        self.config = config
        self._amp_dtype = autocast_dtype(config.precision, self.device, "inference.precision")
        self.clear_memory()

    # ------------------------------------------------------------------ controls
    def clear_memory(self) -> None:
        """Forget the video: the tracked objects, the frame count and the frame size (the next
        ``step`` starts a new video, with a mask). Subclasses also clear their memories."""
        self.objects = ObjectManager()
        self.frame_index = -1
        self.last_memory_index = 0
        self.frame_size: Optional[tuple[int, int]] = None
        self.padded_size: Optional[tuple[int, int]] = None
        self._pads = (0, 0, 0, 0)  # (left, right, top, bottom) of the video's frames

    def clear_non_permanent_memory(self) -> None:
        raise NotImplementedError

    def clear_sensory_memory(self) -> None:
        raise NotImplementedError

    def remove_objects(self, object_ids: Sequence[int]) -> None:
        raise NotImplementedError

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
        self._settings_changed(config)

    def _settings_changed(self, config: InferenceConfig) -> None:
        """Hand new settings to the memories (``update_config``)."""

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
            prob, memorised = self._process(views, given, given_ids, end=end, permanent=permanent)

        prob = unpad(prob, self._pads)
        if prob.shape[-2:] != (height, width):
            prob = F.interpolate(prob.unsqueeze(0), size=(height, width), mode="bilinear", align_corners=False)[0]
        return FramePrediction(prob.float(), self.object_ids, memorised)

    def _process(
        self, views: Tensor, given: Optional[Tensor], given_ids: list[int], *, end: bool, permanent: bool
    ) -> tuple[Tensor, bool]:
        """One frame through the memories: views (V, 3, H', W'); given (n, H', W') soft masks of
        ``given_ids`` or None -> prob (K+1, H', W') over every object tracked after it, and whether
        it was memorised (``permanent``: pinned, when a mask was given)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ shared steps
    def _check_image(self, image: Tensor) -> Tensor:
        """The frame as float (3, H, W) in [0, 1] on the device; it must have the video's size."""
        where = f"{type(self).__name__}.step"
        if image.dim() != 3 or image.shape[0] != 3:
            raise ValueError(f"{where}: image must be (3, H, W), got {tuple(image.shape)}")
        size = (image.shape[1], image.shape[2])
        if self.frame_size is None:
            self.frame_size = size
        elif size != self.frame_size:
            raise ValueError(
                f"{where}: frame size changed within the video ({size[0]}x{size[1]} after "
                f"{self.frame_size[0]}x{self.frame_size[1]}); resize the frames or call clear_memory() first"
            )
        if image.dtype == torch.uint8:
            image = image.float() / 255
        elif not image.is_floating_point():
            raise ValueError(f"{where}: image must be float in [0, 1] or uint8, got {image.dtype}")
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
            self.padded_size, self._pads = (x.shape[-2], x.shape[-1]), pads
        return x

    def _merge_views(self, prob: Tensor) -> Tensor:
        """(V, K+1, H', W') -> (K+1, H', W'): the flipped view is flipped back and averaged in."""
        if prob.shape[0] == 1:
            return prob[0]
        return (prob[0] + prob[1].flip(-1)) / 2

    def _as_views(self, masks: Tensor) -> Tensor:
        """(K, H', W') -> (V, K, H', W') with the flipped copy for the flipped view."""
        return torch.stack([masks, masks.flip(-1)]) if self.config.flip_aug else masks.unsqueeze(0)

    def _merge_given(self, prob: Tensor, given: Tensor, given_ids: list[int]) -> Tensor:
        """prob (K_old+1, H', W') over the objects tracked before this frame; given (n, H', W') for
        ``given_ids`` (already added to ``objects``) -> prob (K+1, H', W') over all objects tracked
        now: given objects replace their prediction, every other object is zeroed where the given
        mask is foreground."""
        num_old = prob.shape[0] - 1
        objects = prob.new_zeros(len(self.objects), *prob.shape[-2:])
        objects[:num_old] = prob[1:]
        if given.shape[0]:
            objects[:, given.sum(dim=0) > 0.5] = 0
        for i, obj in enumerate(given_ids):
            objects[self.objects.channel(obj)] = given[i]
        return torch.softmax(soft_aggregate(objects.unsqueeze(0), dim=1), dim=1)[0]

    def _should_memorise(self, prob: Tensor, mask_given: bool, end: bool) -> bool:
        """Memorise a frame with a given mask, or ``mem_every`` frames after the last memory frame,
        never at ``end`` and, unless ``memorise_empty_frames``, not when no pixel is a target."""
        if end or not len(self.objects):
            return False
        if mask_given:
            return True
        if self.frame_index - self.last_memory_index < self.config.mem_every:
            return False
        return self.config.memorise_empty_frames or bool((winning_channel(prob) > 0).any())
