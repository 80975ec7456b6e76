"""The training-clip dataset over VOS-layout videos (read by ``s3.data.video_folders``).

Mask values are object ids; void (255) becomes background. ``VOSClipDataset`` indexes every frame of
every video ``multiplier`` times; item ``i`` is a clip seeded at that frame, sampled
(``s3.data.sampling``), augmented (``s3.data.transforms``), possibly merged with a random partner
clip (``s3.data.paste``), and returned as the training sample described in ``to_training_sample``.
Items are a pure function of (seed, epoch, dataset name, index).

The datasets trained together form a mix (``s3.data.build`` links them): as in the authors' code, a
paste partner, and the restart after a seed frame that gives no clip, is drawn from the whole mix,
uniformly over its clip index (frames x multiplier). A clip whose first frame shows no object (known
from the empty-frame list before reading, or found after reading, or every crop of it empty) is
dropped and another seed frame of the same video tried; both codes end up there.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
import torch
from torch.utils.data import Dataset

from s3.config.data import DataConfig
from s3.config.validation import InputError
from s3.data.frames import FrameFileError, read_rgb
from s3.data.palette import VOID_LABEL, MaskFileError, read_mask
from s3.data.paste import paste_clip
from s3.data.sampling import dataset_max_skip, sample_clip_frames
from s3.data.transforms import ClipAugmentation
from s3.data.video_folders import VideoRecord

SEED_FRAMES_PER_ITEM = 5  # seed frames tried in the item's video before moving to a random frame
MAX_RANDOM_RESTARTS = 100  # random (video, frame) restarts before declaring the dataset unusable


def read_frames(video: VideoRecord, indices: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 RGB frames (T, 3, H, W) (a view of (T, H, W, 3) memory) and uint8 labels (T, H, W) (void -> 0)
    of the given frames; a mask whose size differs from its frame, or a frame whose size differs from the
    others, is an error."""
    images, labels = [], []
    for i in indices:
        image, mask = read_rgb(video.image_paths[i]), read_mask(video.mask_paths[i])
        if mask.shape != image.shape[:2]:
            raise MaskFileError(
                f"{video.mask_paths[i]}: mask size {mask.shape[1]}x{mask.shape[0]} differs from its frame "
                f"{video.image_paths[i]} ({image.shape[1]}x{image.shape[0]})"
            )
        if images and image.shape != images[0].shape:
            raise FrameFileError(
                f"{video.image_paths[i]}: frame size {image.shape[1]}x{image.shape[0]} differs from "
                f"{video.image_paths[indices[0]]} ({images[0].shape[1]}x{images[0].shape[0]}) of the same video"
            )
        images.append(image)
        labels.append(mask)
    frames = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2)  # a view: the augmentation reads a window
    label_maps = np.stack(labels)
    label_maps[label_maps == VOID_LABEL] = 0
    return frames, torch.from_numpy(label_maps)


@dataclass
class Clip:
    """An augmented clip before object selection: frames, raw object ids and where it came from."""

    frames: torch.Tensor  # float32 (T, 3, H, W) in [0, 1]
    labels: torch.Tensor  # int64 (T, H, W), dataset object ids (0 = background)
    dataset: str
    video: str
    frame_names: list[str]


def to_training_sample(clip: Clip, max_objects: int, rng: np.random.Generator) -> dict[str, Any]:
    """The sample dict handed to the trainer.

    Up to ``max_objects`` objects visible in the first frame are chosen at random and relabelled
    1..k in random order; every other pixel is background. Keys:
    ``frames`` float32 (T, 3, H, W) in [0, 1]; ``labels`` int64 (T, H, W) in 0..k; ``selector``
    float32 (max_objects,), 1 for the k real objects; ``num_objects`` int k; ``info`` dict of strings
    ``dataset``, ``video`` and the list ``frames`` of frame names.
    """
    visible = torch.unique(clip.labels[0])
    visible = visible[visible != 0]
    if len(visible) == 0:
        raise ValueError(f"{clip.dataset}/{clip.video}: the first frame of the clip has no object")
    order = rng.permutation(len(visible))[:max_objects]
    labels = torch.zeros_like(clip.labels)
    for new_id, index in enumerate(order, start=1):
        labels[clip.labels == visible[index]] = new_id
    selector = torch.zeros(max_objects, dtype=torch.float32)
    selector[: len(order)] = 1.0
    return {
        "frames": clip.frames.to(torch.float32),
        "labels": labels,
        "selector": selector,
        "num_objects": len(order),
        "info": {"dataset": clip.dataset, "video": clip.video, "frames": list(clip.frame_names)},
    }


def item_rng(seed: int, epoch: int, salt: int, index: int) -> np.random.Generator:
    """The generator of one item: a pure function of (seed, epoch, salt, index)."""
    return np.random.default_rng(np.random.SeedSequence([seed, epoch, salt, index]))


def name_salt(name: str) -> int:
    """A stable number per dataset name, so equal indices of two datasets draw differently."""
    return zlib.crc32(name.encode("utf-8"))


class VOSClipDataset(Dataset):
    """Training clips from one VOS dataset; length = multiplier x number of frames."""

    def __init__(
        self,
        name: str,
        videos: Sequence[VideoRecord],
        cfg: DataConfig,
        *,
        frame_interval: int,
        multiplier: int,
        max_skip: int,
        seed: int,
        empty_frames: Optional[dict[str, set[str]]] = None,
    ) -> None:
        self.name = name
        self.videos = [v for v in videos if len(v.frames) >= cfg.seq_length]
        if not self.videos:
            raise InputError(f"dataset {name}: no video has at least data.seq_length={cfg.seq_length} annotated frames")
        self.seq_length = cfg.seq_length
        self.max_objects = cfg.max_objects
        self.paste_probability = cfg.paste_probability
        self.reverse_probability = cfg.reverse_probability
        self.multiplier = multiplier
        self.max_skip = dataset_max_skip(max_skip, frame_interval)
        self.seed = seed
        self.epoch = 0
        self.salt = name_salt(name)
        self.augmentation = ClipAugmentation(cfg.augmentation, cfg.crop_size)
        empty_frames = empty_frames or {}
        self.empty_indices = [
            frozenset(i for i, f in enumerate(v.frames) if f in empty_frames.get(v.name, ())) for v in self.videos
        ]
        self.video_starts = np.cumsum([0] + [len(v.frames) for v in self.videos])
        self.num_frames = int(self.video_starts[-1])
        self.mix: list[VOSClipDataset] = [self]  # the datasets trained together (set by s3.data.build)

    def __len__(self) -> int:
        return self.multiplier * self.num_frames

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose clips ``__getitem__`` returns.

        DataLoader workers copy the dataset when an iterator starts: call this before ``iter(loader)``
        (persistent workers keep the epoch they were started with).
        """
        self.epoch = epoch

    def locate(self, frame_index: int) -> tuple[int, int]:
        """(video index, frame index in the video) of a position in the frame index."""
        video = int(np.searchsorted(self.video_starts, frame_index, side="right")) - 1
        return video, frame_index - int(self.video_starts[video])

    def random_frame(self, rng: np.random.Generator) -> tuple[VOSClipDataset, int]:
        """A (dataset, frame index) of the mix, uniform over its clip index (frames x multiplier)."""
        ends = np.cumsum([len(d) for d in self.mix])
        index = int(rng.integers(ends[-1]))
        part = int(np.searchsorted(ends, index, side="right"))
        dataset = self.mix[part]
        return dataset, (index - int(ends[part]) + len(dataset)) % dataset.num_frames

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < len(self):
            raise IndexError(f"dataset {self.name}: index {index} out of range [0, {len(self)})")
        rng = item_rng(self.seed, self.epoch, self.salt, index)
        clip = self.load_clip(index % self.num_frames, rng)
        first_frame_objects = int(torch.count_nonzero(torch.unique(clip.labels[0])))
        if first_frame_objects < self.max_objects and rng.random() < self.paste_probability:
            partner, frame_index = self.random_frame(rng)
            other = partner.load_clip(frame_index, rng)
            clip.frames, clip.labels = paste_clip(clip.frames, clip.labels, other.frames, other.labels)
        return to_training_sample(clip, self.max_objects, rng)

    def load_clip(self, frame_index: int, rng: np.random.Generator) -> Clip:
        """An augmented clip seeded at ``frame_index`` whose first frame shows an object.

        Tries ``SEED_FRAMES_PER_ITEM`` seed frames of the same video (the given one first), then
        restarts from a random frame of the mix (:meth:`random_frame`).
        """
        dataset = self
        for _ in range(MAX_RANDOM_RESTARTS):
            clip = dataset._clip_from_video(frame_index, rng)
            if clip is not None:
                return clip
            dataset, frame_index = self.random_frame(rng)
        names = ", ".join(f"data.datasets.{d.name} ({d.videos[0].mask_paths[0].parent.parent})" for d in self.mix)
        raise InputError(
            f"no clip with an object in its first frame after {MAX_RANDOM_RESTARTS * SEED_FRAMES_PER_ITEM} "
            f"seed frames of {names}: are the masks empty?"
        )

    def _clip_from_video(self, frame_index: int, rng: np.random.Generator) -> Optional[Clip]:
        """A clip from the video of ``frame_index``, seeded there or at up to ``SEED_FRAMES_PER_ITEM - 1``
        random frames of the video; None when none has an object in its first frame."""
        video_index, seed_frame = self.locate(frame_index)
        for _ in range(SEED_FRAMES_PER_ITEM):
            clip = self._try_clip(video_index, seed_frame, rng)
            if clip is not None:
                return clip
            seed_frame = int(rng.integers(len(self.videos[video_index].frames)))
        return None

    def _try_clip(self, video_index: int, seed_frame: int, rng: np.random.Generator) -> Optional[Clip]:
        video = self.videos[video_index]
        indices = sample_clip_frames(
            len(video.frames), seed_frame, self.seq_length, self.max_skip, rng,
            reverse_probability=self.reverse_probability, empty_frames=self.empty_indices[video_index],
        )
        if indices is None:
            return None
        frames, labels = read_frames(video, indices)
        if not labels[0].any():
            return None
        augmented = self.augmentation(frames, labels, rng)
        if augmented is None:
            return None
        return Clip(
            frames=augmented[0], labels=augmented[1], dataset=self.name, video=video.name,
            frame_names=[video.frames[i] for i in indices],
        )
