"""Video-level helpers: frame sources (image folders, video files) and forward/reverse propagation.

    frames = open_frames("clip.mp4")                     # or a folder of JPEG/PNG frames
    for index, prediction in propagate(processor, frames, {40: mask}, reverse=True):
        ...                                              # frames 40, 39, ..., 0

``processor`` is any streaming engine with the ``VideoProcessor`` API (``step``), e.g. from
``s3.run.load_processor``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, Mapping, Optional, Protocol, Union

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from s3.data.frames import IMAGE_SUFFIXES, FrameFileError, list_frames, read_rgb
from s3.inference.streaming import FramePrediction


class FrameSource(Protocol):
    """Random access to the RGB frames of one video."""

    names: list[str]  # one name per frame (file stem, or the zero-padded index for video files)

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> np.ndarray:
        """Frame ``index`` as (H, W, 3) uint8 RGB."""
        ...


class ImageFolder:
    """The image files of a folder, in frame order (``s3.data.frames``: ``2.jpg`` before ``10.jpg``)."""

    def __init__(self, folder: Union[str, Path]) -> None:
        folder = Path(folder)
        self.paths = list_frames(folder) if folder.is_dir() else []
        if not self.paths:
            raise FrameFileError(f"{folder}: no image frames ({', '.join(IMAGE_SUFFIXES)}) found")
        self.names = [p.stem for p in self.paths]

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> np.ndarray:
        return read_rgb(self.paths[index])


class VideoFile:
    """The frames of a video file decoded with OpenCV; reading in order avoids seeking."""

    def __init__(self, path: Union[str, Path]) -> None:
        import cv2  # OpenCV is loaded by the jobs that read video files only

        self.path = Path(path)
        self.capture = cv2.VideoCapture(str(self.path))
        if not self.capture.isOpened():
            raise FrameFileError(f"{self.path}: OpenCV cannot open this video")
        count = int(self.capture.get(cv2.CAP_PROP_FRAME_COUNT))
        if count <= 0:
            raise FrameFileError(f"{self.path}: the video reports no frames")
        self.names = [f"{i:07d}" for i in range(count)]
        self._next = 0

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> np.ndarray:
        import cv2

        if not 0 <= index < len(self):
            raise IndexError(f"{self.path}: frame {index} is out of range (0..{len(self) - 1})")
        if index != self._next:
            self.capture.set(cv2.CAP_PROP_POS_FRAMES, index)
        ok, bgr = self.capture.read()
        if not ok:
            raise FrameFileError(f"{self.path}: cannot decode frame {index} (truncated file?)")
        self._next = index + 1
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def open_frames(path: Union[str, Path]) -> FrameSource:
    """A folder of frames or a video file."""
    path = Path(path)
    if path.is_dir():
        return ImageFolder(path)
    if path.is_file():
        return VideoFile(path)
    raise FrameFileError(f"{path}: no such frame folder or video file")


def image_to_tensor(rgb: np.ndarray) -> Tensor:
    """(H, W, 3) uint8 -> (3, H, W) float in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).float().div_(255)


def propagation_order(num_frames: int, start: int, stop: Optional[int], reverse: bool) -> list[int]:
    """Frame indices from ``start`` towards ``stop`` (inclusive; default: the last frame, or frame 0
    when ``reverse``)."""
    if not 0 <= start < num_frames:
        raise ValueError(f"propagate: start frame {start} is outside 0..{num_frames - 1}")
    end = (0 if reverse else num_frames - 1) if stop is None else stop
    if not 0 <= end < num_frames or (end > start if reverse else end < start):
        raise ValueError(f"propagate: stop frame {end} is not {'before' if reverse else 'after'} start {start}")
    return list(range(start, end - 1, -1)) if reverse else list(range(start, end + 1))


def propagate(
    processor: Any,
    frames: FrameSource,
    masks: Mapping[int, Union[Tensor, np.ndarray]],
    start: Optional[int] = None,
    stop: Optional[int] = None,
    reverse: bool = False,
    progress: bool = True,
) -> Iterator[tuple[int, FramePrediction]]:
    """Segment a video with ``processor`` (a fresh engine: this is its whole video) from an annotated
    frame onwards (or backwards with ``reverse``).

    masks: frame index -> index mask (H, W) of object ids; the start frame (default: the first
    annotated frame, or the last one when ``reverse``) must be one of them, and every other mask
    met on the way adds or corrects objects. Yields (frame index, prediction) in processing order.
    """
    if not masks:
        raise ValueError("propagate: at least one annotated frame is needed")
    if start is None:
        start = max(masks) if reverse else min(masks)
    if start not in masks:
        raise ValueError(f"propagate: start frame {start} has no mask (annotated frames: {sorted(masks)})")
    order = propagation_order(len(frames), start, stop, reverse)
    for n, index in enumerate(tqdm(order, desc="frames", unit="frame", disable=not progress, leave=False)):
        mask = masks.get(index)
        if isinstance(mask, np.ndarray):
            mask = torch.from_numpy(mask.astype(np.int64))
        prediction = processor.step(image_to_tensor(frames[index]), mask, end=n == len(order) - 1)
        yield index, prediction
