"""The segmentation job behind ``scripts/segment.py``: a video of one's own (a video file or a folder
of frames) segmented from its masks by the streaming engine of a model config's architecture (the
one evaluation builds, ``s3.run.architectures.make_processor``), driven by ``s3.inference.propagate``.

    processor = load_processor("s3_vitb", weights="checkpoints/s3_vitb.pth")
    for frame in segment_video(processor, "clip.mp4", "masks/"):
        frame.id_mask()                  # (H, W) uint8 object ids at the video's own size
        frame.prediction.probabilities   # (K+1, H, W); frame.prediction.object_ids

Masks: one PNG is the mask of the start frame (default: the first frame, the last with
``reverse``); a folder holds ``<frame name>.png`` files, a frame's name being its file stem for a
frame folder and its index zero-padded to 7 digits for a video file (``0000012.png``); a name of
digits only also matches the frame whose name is that number (``12.png``). Propagation starts at
``start`` (default: the first annotated frame, the last with ``reverse``); a mask met later adds the
objects it shows from that frame on (and resets those it shows; the others keep being tracked);
masks behind the start are not used (a warning lists them).
A mask is a palette (``P``) or grey-level (``L``, or 16-bit) index image of object ids 1..255; one
whose size differs from its frame's is resized (nearest neighbour, ids stay ids) with a warning.

Output folder (``out``)::

    masks/<frame name>.png     palette PNGs at the video's own size, one per processed frame
    overlay.mp4                the processed frames in time order, each object tinted
    overlay/<frame name>.jpg   the same as images (save_overlays=true)
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Optional, Union

import cv2
import numpy as np
import torch
from omegaconf import DictConfig
from PIL import Image
from tqdm import tqdm

from s3.config import to_model_config
from s3.config.jobs import SegmentConfig, job_config
from s3.config.validation import ConfigError, InputWarning
from s3.data.palette import MaskFileError, read_mask
from s3.eval.submission import write_prediction
from s3.eval.visualize import OverlayWriter
from s3.inference.streaming import FramePrediction
from s3.inference.video import FrameSource, VideoFile, open_frames, propagate
from s3.run.architectures import build_model, make_processor
from s3.run.runtime import process_runtime

MAX_OBJECT_ID = 255  # the largest id a palette PNG holds
WIDE_INDEX_MODES = ("I", "I;16", "I;16B", "I;16L")  # 16/32-bit grey images: index images when their ids fit
FOLDER_FPS = 10.0  # overlay frame rate of a frame folder (a video file keeps its own)
MASKS_DIR = "masks"
OVERLAY_NAME = "overlay"

# A PNG file, a folder of <frame name>.png, or frame index -> (H, W) integer array of object ids.
MaskInput = Union[str, Path, Mapping[int, np.ndarray]]


@dataclass
class SegmentedFrame:
    """One processed frame."""

    index: int  # position in the video
    name: str  # the frame's name: its file stem, or its 7-digit index in a video file
    prediction: FramePrediction  # probabilities (K+1, H, W) at the frame's own size, object_ids

    def id_mask(self) -> np.ndarray:
        """(H, W) uint8 object ids, 0 = background."""
        return self.prediction.id_mask().cpu().numpy().astype(np.uint8)


@dataclass
class SegmentReport:
    """What a segmentation run wrote."""

    out: Path
    frames: list[str]  # names of the frames written, in processing order
    object_ids: list[int]
    overlay_video: Path
    notes: list[str] = field(default_factory=list)

    def format(self) -> str:
        return "\n".join([
            f"wrote {len(self.frames)} masks to {self.out / MASKS_DIR} (frames {self.frames[0]} .. {self.frames[-1]})",
            f"objects: {', '.join(map(str, self.object_ids)) or 'none'}",
            f"wrote {self.overlay_video}",
            *self.notes,
        ])


def _checked_ids(mask: Any, what: str) -> np.ndarray:
    """``mask`` as (H, W) uint8 ids, or MaskFileError naming ``what``."""
    mask = np.asarray(mask)
    if mask.ndim != 2 or not np.issubdtype(mask.dtype, np.integer):
        raise MaskFileError(f"{what}: a mask is an (H, W) integer array of object ids, got {mask.dtype} {mask.shape}")
    if mask.size and (mask.min() < 0 or mask.max() > MAX_OBJECT_ID):
        raise MaskFileError(
            f"{what}: object ids must lie in 0..{MAX_OBJECT_ID} (palette PNGs hold no more), "
            f"found {int(mask.min())}..{int(mask.max())}"
        )
    return mask.astype(np.uint8)


def _wide_index_image(path: Path) -> Optional[np.ndarray]:
    """The pixel values of a 16/32-bit grey image; None for any other file."""
    try:
        with Image.open(path) as image:
            return np.array(image).astype(np.int64) if image.mode in WIDE_INDEX_MODES else None
    except (OSError, SyntaxError, ValueError):
        return None


def read_index_mask(path: Path) -> np.ndarray:
    """A mask file as (H, W) uint8 object ids: a palette or grey PNG (``read_mask``), or a 16/32-bit
    grey image whose ids fit in 0..255; anything else raises MaskFileError naming the file."""
    try:
        return read_mask(path)
    except MaskFileError:
        wide = _wide_index_image(path)
        if wide is None:
            raise
        return _checked_ids(wide, str(path))


def _mask_files(folder: Path, names: Sequence[str]) -> dict[int, Path]:
    """Frame index -> ``<frame name>.png`` of ``folder`` (see the module docstring for the names)."""
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".png")
    if not files:
        raise MaskFileError(f"{folder}: no .png masks found")
    exact = {name: i for i, name in enumerate(names)}
    numbered = {int(name): i for i, name in enumerate(names) if name.isdecimal()}
    found: dict[int, Path] = {}
    for file in files:
        index = exact.get(file.stem)
        if index is None and file.stem.isdecimal():
            index = numbered.get(int(file.stem))
        if index is None:
            raise MaskFileError(
                f"{file}: the name matches no frame of the video (frames {names[0]} .. {names[-1]}; "
                "video files name frames by index: 0000000 ...)"
            )
        if index in found:
            raise MaskFileError(f"{file}: frame {names[index]} already has a mask, {found[index].name}")
        found[index] = file
    return found


def _fit_to_frame(mask: np.ndarray, frame_size: tuple[int, int], what: str) -> np.ndarray:
    """``mask`` at ``frame_size`` (H, W): resized nearest-neighbour, with a warning, when it differs."""
    if mask.shape == frame_size:
        return mask
    warnings.warn(
        f"{what}: mask is {mask.shape[1]}x{mask.shape[0]} but its frame is {frame_size[1]}x{frame_size[0]}; "
        "resized (nearest neighbour, ids kept)",
        InputWarning,
        stacklevel=2,
    )
    return cv2.resize(mask, (frame_size[1], frame_size[0]), interpolation=cv2.INTER_NEAREST)


def read_masks(
    masks: MaskInput, frames: FrameSource, start: Optional[int] = None, reverse: bool = False
) -> tuple[dict[int, np.ndarray], int]:
    """The masks of ``frames`` (frame index -> (H, W) uint8 ids at the frame's size) and the frame to
    start from. Every unusable input raises an InputError (ConfigError naming ``start``, else
    MaskFileError naming the file) with a one-line message."""
    count = len(frames)
    if start is not None and not 0 <= start < count:
        raise ConfigError(f"start={start} is outside the video's frames 0..{count - 1}")
    where = "masks" if isinstance(masks, Mapping) else str(masks)
    sources: dict[int, tuple[str, Any]]  # frame index -> (what to call it, a file or an array)
    if isinstance(masks, Mapping):
        sources = {int(i): (f"masks[{i}]", m) for i, m in masks.items()}
        outside = sorted(i for i in sources if not 0 <= i < count)
        if outside:
            raise MaskFileError(f"masks[{outside[0]}]: no such frame (the video has frames 0..{count - 1})")
    elif Path(masks).is_dir():
        sources = {i: (str(p), p) for i, p in _mask_files(Path(masks), frames.names).items()}
    elif Path(masks).is_file():
        single = start if start is not None else (count - 1 if reverse else 0)
        sources = {single: (str(masks), Path(masks))}
    else:
        raise MaskFileError(f"{masks}: no such mask file or folder")
    if not sources:
        raise MaskFileError("masks: at least one annotated frame is needed")
    if start is None:
        start = max(sources) if reverse else min(sources)
    if start not in sources:
        annotated = ", ".join(frames.names[i] for i in sorted(sources))
        raise ConfigError(f"start={start}: frame {frames.names[start]} has no mask in {where} (annotated: {annotated})")
    unused = sorted(i for i in sources if (i > start if reverse else i < start))
    if unused:
        warnings.warn(
            f"{where}: the masks of frames {', '.join(frames.names[i] for i in unused)} are not used: propagation "
            f"runs from frame {frames.names[start]} {'backwards' if reverse else 'forwards'}",
            InputWarning,
            stacklevel=2,
        )
    checked = {}
    for index in sorted(set(sources) - set(unused)):
        what, source = sources[index]
        mask = read_index_mask(source) if isinstance(source, Path) else _checked_ids(source, what)
        checked[index] = _fit_to_frame(mask, frames[index].shape[:2], what)
    if not any(mask.any() for mask in checked.values()):
        raise MaskFileError(f"{where}: no object in any mask (every pixel is 0)")
    return checked, start


def _segment_frames(
    processor: Any, frames: FrameSource, masks: dict[int, np.ndarray], start: int, reverse: bool, progress: bool
) -> Iterator[SegmentedFrame]:
    processor.clear_memory()
    for index, prediction in propagate(processor, frames, masks, start, reverse=reverse, progress=progress):
        yield SegmentedFrame(index, frames.names[index], prediction)


def segment_video(
    processor: Any,
    video: Union[str, Path, FrameSource],
    masks: MaskInput,
    start: Optional[int] = None,
    reverse: bool = False,
    progress: bool = True,
) -> Iterator[SegmentedFrame]:
    """Segment a whole video with ``processor`` (any engine of ``s3.run.load_processor``; its memory
    is cleared first): ``video`` a video file, a frame folder or a frame source; ``masks`` a PNG, a
    folder of ``<frame name>.png`` or {frame index: (H, W) ids} (see the module docstring). The
    inputs are checked now; the frames are processed as the iterator is read, from ``start``
    to the last frame (to frame 0 with ``reverse``)."""
    frames = open_frames(video) if isinstance(video, (str, Path)) else video
    checked, start = read_masks(masks, frames, start, reverse)
    return _segment_frames(processor, frames, checked, start, reverse, progress)


def write_overlays(
    frames: FrameSource, indices: Sequence[int], out: Path, fps: float, save_images: bool, progress: bool
) -> Path:
    """``out/overlay.mp4`` (and ``out/overlay/<frame>.jpg`` with ``save_images``) of the frames at
    ``indices``, in time order, with the masks written under ``out/masks``."""
    writer = OverlayWriter(out / OVERLAY_NAME, fps, save_images)
    try:
        for index in tqdm(sorted(indices), desc="overlay", unit="frame", disable=not progress, leave=False):
            name = frames.names[index]
            writer.add(name, frames[index], read_mask(out / MASKS_DIR / f"{name}.png"))
    finally:
        writer.close()
    return (out / OVERLAY_NAME).with_suffix(".mp4")


def _frame_rate(frames: FrameSource, fps: Optional[float]) -> float:
    """``fps`` when set, else the video file's own rate (``FOLDER_FPS`` for a frame folder)."""
    if fps is not None:
        return fps
    own = frames.capture.get(cv2.CAP_PROP_FPS) if isinstance(frames, VideoFile) else 0.0
    return own if own > 0 else FOLDER_FPS


def segment(cfg: SegmentConfig, model_cfg: Any) -> SegmentReport:
    """The whole job: check the video and masks, build the network of ``model_cfg`` (``cfg.weights``
    when set; random weights seeded by ``cfg.seed`` when it has none) in its architecture's engine,
    segment, write the masks and the overlays (see the module docstring)."""
    frames = open_frames(cfg.video)
    masks, start = read_masks(cfg.masks, frames, cfg.start, cfg.reverse)
    if cfg.weights:
        model_cfg = replace(model_cfg, weights=cfg.weights)
    out = Path(cfg.out)
    written: list[int] = []  # frame indices, in processing order
    object_ids: list[int] = []
    with process_runtime(cfg.device, cfg.threads) as ctx:
        torch.manual_seed(cfg.seed)
        processor = make_processor(build_model(model_cfg).to(ctx.device), model_cfg, cfg.inference_config())
        for frame in _segment_frames(processor, frames, masks, start, cfg.reverse, cfg.progress):
            write_prediction(out / MASKS_DIR / f"{frame.name}.png", frame.id_mask())
            written.append(frame.index)
            object_ids = frame.prediction.object_ids
    video = write_overlays(frames, written, out, _frame_rate(frames, cfg.fps), cfg.save_overlays, cfg.progress)
    report = SegmentReport(out, [frames.names[i] for i in written], object_ids, video)
    report.notes.append(f"model={model_cfg.name} start={frames.names[start]} reverse={cfg.reverse} size={cfg.size}")
    if not model_cfg.weights:
        report.notes.append("weights=null: the network has random weights")
    return report


def segment_from_config(node: DictConfig) -> SegmentReport:
    """:func:`segment` on a composed ``segment`` config (``configs/segment.yaml``)."""
    cfg: SegmentConfig = job_config(node, SegmentConfig, leave_out=("model",))
    return segment(cfg, to_model_config(node.model))
