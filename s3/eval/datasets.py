"""Evaluation-time readers: per preset, which videos and frames exist, which masks are fed, which
frames are written and at which size.

Layouts (``dataset.layout``):

- ``davis`` / ``generic``: ``<image_dir>/<video>/<frame>.jpg`` and ``<mask_dir>/<video>/<frame>.png``;
  videos from the ``subset`` file, else the sub-folders of ``mask_dir``;
- ``ytvos``: the same folders, plus ``meta.json`` naming per object the frames the server scores;
  the union over objects is what gets written unless ``save_all``;
- ``burst``: one JSON (``sequences``: ``dataset``, ``seq_name``, ``all_image_paths``,
  ``annotated_image_paths``, ``segmentations`` aligned with the annotated paths, each
  ``{track_id: {"rle": ...}}``); frames under ``<image_dir>/<dataset>/<seq_name>/``; videos are named
  ``<dataset>_-_<seq_name>``; only the annotated frames are written.

Frames and masks are taken in frame order (``s3.data.frames``: ``2.jpg`` before ``10.jpg``). Masks
(from the protocol's ``mask_dir``): a video starts at its first mask frame (earlier frames are
neither processed nor written). Without ``use_all_masks`` only that first mask is fed; with it, every
mask file is, each must have its frame, and each must introduce new objects only (see
:func:`check_new_objects`), which is what sparse first-appearance annotations look like and what a
ground-truth folder never does. Pixels of the preset's ``void_label`` are background when fed.

Geometry (:func:`fit_mask_to_frame`): a fed mask of its frame's size is used as is; one of the same
aspect ratio (within a pixel) but another size is resized nearest-neighbour with an ``InputWarning``
naming the file; any other size is a :class:`DatasetError`. Every frame of a video must have the size
of its first frame, and the written size (``output_size_dir``) its aspect ratio (checked as the
frames are read, by the evaluation job).
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
from PIL import Image, UnidentifiedImageError

from s3.config.eval import DatasetConfig, Protocol
from s3.config.validation import InputError, InputWarning, first_line
from s3.data.frames import in_frame_order, list_frames
from s3.data.palette import read_mask
from s3.data.rle import rle_decode

BURST_SEPARATOR = "_-_"


class DatasetError(InputError):
    """The dataset on disk does not match its preset; the message names the file or folder."""


def same_aspect(size: tuple[int, int], other: tuple[int, int]) -> bool:
    """Whether two (H, W) sizes show the same picture: scaled to the smaller one, they differ by at
    most a pixel (DAVIS 1920x1080 and 854x480 do)."""
    (h, w), (oh, ow) = size, other
    return abs(w * oh - ow * h) <= min(max(h, oh), max(w, ow))


def fit_mask_to_frame(labels: np.ndarray, frame_size: tuple[int, int], where: str) -> np.ndarray:
    """``labels`` (h, w) at ``frame_size`` (H, W): as is, or resized nearest-neighbour (pixel centres)
    with an InputWarning when the aspect ratio matches; a DatasetError otherwise."""
    shape = (int(labels.shape[0]), int(labels.shape[1]))
    if shape == tuple(frame_size):
        return labels
    (h, w), (height, width) = shape, frame_size
    if not same_aspect(shape, frame_size):
        raise DatasetError(
            f"{where}: mask size {w}x{h} does not fit its frame ({width}x{height}, another aspect ratio); "
            "masks must be drawn on their frames"
        )
    warnings.warn(InputWarning(f"{where}: mask size {w}x{h} resized nearest-neighbour to its frame's {width}x{height}"))
    rows = np.minimum(((np.arange(height) + 0.5) * h / height).astype(np.int64), h - 1)
    columns = np.minimum(((np.arange(width) + 0.5) * w / width).astype(np.int64), w - 1)
    return labels[rows[:, None], columns[None, :]]


@dataclass
class EvalVideo:
    """One video as the evaluation loop sees it."""

    name: str
    frames: list[Path]  # the frames to process, in order (from the first mask frame on)
    output_size: tuple[int, int]  # (H, W) of the written masks: the original resolution
    mask_files: dict[str, Path] = field(default_factory=dict)  # frame name -> PNG fed at that frame
    burst_masks: dict[str, dict[int, dict[str, Any]]] = field(default_factory=dict)  # frame -> track id -> RLE
    save: Optional[set[str]] = None  # frame names to write; None: every processed frame
    burst_sequence: Optional[dict[str, Any]] = None  # the input JSON entry (burst)
    burst_json: Optional[Path] = None  # the input JSON (burst)
    void_label: Optional[int] = None  # mask value fed as background (DatasetConfig.void_label)

    @property
    def frame_names(self) -> list[str]:
        return [p.stem for p in self.frames]

    def saves(self, frame_name: str) -> bool:
        return self.save is None or frame_name in self.save

    def mask_location(self, frame_name: str) -> str:
        """Where the mask fed at ``frame_name`` comes from, for messages: its file, or JSON: video/frame."""
        if frame_name in self.mask_files:
            return str(self.mask_files[frame_name])
        return f"{self.burst_json}: {self.name}/{frame_name}"

    def input_mask(self, frame_name: str, frame_size: tuple[int, int]) -> Optional[np.ndarray]:
        """The index mask (H, W) int64 of object ids fed at ``frame_name``, fitted to its frame's
        ``frame_size`` (:func:`fit_mask_to_frame`), void pixels as background; None when none is fed."""
        if frame_name in self.mask_files:
            labels = read_mask(self.mask_files[frame_name]).astype(np.int64)
        elif frame_name in self.burst_masks:
            labels = self._burst_labels(frame_name)
        else:
            return None
        if self.void_label is not None:
            labels[labels == self.void_label] = 0
        return fit_mask_to_frame(labels, frame_size, self.mask_location(frame_name))

    def _burst_labels(self, frame_name: str) -> np.ndarray:
        labels: Optional[np.ndarray] = None
        for track, rle in sorted(self.burst_masks[frame_name].items()):
            try:
                decoded = rle_decode(rle)
            except ValueError as err:
                raise DatasetError(f"{self.mask_location(frame_name)}: track {track}: {first_line(err)}") from err
            labels = np.zeros(decoded.shape, np.int64) if labels is None else labels
            if decoded.shape != labels.shape:
                raise DatasetError(f"{self.mask_location(frame_name)}: track {track} has another mask size")
            labels[decoded] = track
        assert labels is not None  # frames without tracks are not fed
        return labels


def check_new_objects(video: EvalVideo, frame_name: str, ids: list[int], seen: set[int]) -> None:
    """With ``use_all_masks``, a later mask may only add objects: one that repeats an id is ground
    truth, and feeding it would hand the tracker the answer."""
    repeated = sorted(set(ids) & seen)
    if repeated:
        where = video.mask_location(frame_name)
        raise DatasetError(
            f"{where}: objects {repeated} were already given on an earlier frame; this mask folder holds "
            "ground truth, and use_all_masks would feed the answers (set use_all_masks=false or point "
            "dataset.mask_dir at first-appearance annotations)"
        )


def _resolve(root: Path, path: str) -> Path:
    candidate = Path(path)
    return candidate if candidate.is_absolute() else root / candidate


def _image_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise DatasetError(f"{folder}: frame folder not found")
    files = list_frames(folder)
    if not files:
        raise DatasetError(f"{folder}: no frames")
    return files


def _image_size(path: Path) -> tuple[int, int]:
    try:
        with Image.open(path) as image:
            return image.height, image.width
    except (UnidentifiedImageError, OSError) as err:
        raise DatasetError(f"{path}: not a readable image ({first_line(err)})") from None


def _read_json(path: Path, key: str) -> Any:
    if not path.is_file():
        raise DatasetError(f"{path}: file not found ({key})")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DatasetError(f"{path}: not valid JSON, truncated? ({first_line(err)})") from None


def input_folders(cfg: DatasetConfig, protocol: Protocol) -> dict[str, Path]:
    """Every folder and file a run of this preset reads, by the key that names it."""
    root = Path(cfg.root)
    named = {
        "dataset.image_dir": protocol.image_dir,
        "dataset.mask_dir": protocol.mask_dir if cfg.layout != "burst" else None,
        "dataset.gt_dir": cfg.gt_dir or (cfg.mask_dir if cfg.score_mode != "none" else None),
        "dataset.output_size_dir": cfg.output_size_dir,
        "dataset.subset": cfg.subset,
        "dataset.meta": cfg.meta,
        "dataset.burst_json": cfg.burst_json,
    }
    return {key: _resolve(root, value) for key, value in named.items() if value}


def _video_names(cfg: DatasetConfig, root: Path, mask_dir: Path) -> list[str]:
    if cfg.subset:
        subset = _resolve(root, cfg.subset)
        if not subset.is_file():
            raise DatasetError(f"{subset}: subset file not found (dataset.subset)")
        names = [line.strip() for line in subset.read_text().splitlines() if line.strip()]
    else:
        if not mask_dir.is_dir():
            raise DatasetError(f"{mask_dir}: mask folder not found (dataset.mask_dir)")
        names = sorted(p.name for p in mask_dir.iterdir() if p.is_dir())
    if not names:
        raise DatasetError(f"{cfg.subset or mask_dir}: no videos listed")
    return names


def _meta_frames(meta_path: Path) -> dict[str, set[str]]:
    """ytvos meta.json -> video -> the union over objects of the frames to write."""
    data = _read_json(meta_path, "dataset.meta")
    try:
        return {
            name: {f for obj in entry["objects"].values() for f in obj["frames"]}
            for name, entry in data["videos"].items()
        }
    except (KeyError, TypeError, AttributeError) as err:
        raise DatasetError(f"{meta_path}: not a YouTube-VOS meta.json ({err})") from err


def _folder_videos(cfg: DatasetConfig, protocol: Protocol, root: Path) -> list[EvalVideo]:
    image_dir = _resolve(root, protocol.image_dir)
    mask_dir = _resolve(root, protocol.mask_dir)
    size_dir = _resolve(root, cfg.output_size_dir) if cfg.output_size_dir else None
    meta = _meta_frames(_resolve(root, cfg.meta)) if cfg.layout == "ytvos" and not protocol.save_all else None
    videos = []
    for name in _video_names(cfg, root, mask_dir):
        frames = _image_files(image_dir / name)
        mask_folder = mask_dir / name
        masks = in_frame_order(mask_folder.glob("*.png")) if mask_folder.is_dir() else []
        if not masks:
            raise DatasetError(f"{mask_folder}: no mask PNG for video {name}")
        frame_names = [p.stem for p in frames]
        fed = masks if protocol.use_all_masks else masks[:1]
        for mask in fed:
            if mask.stem not in frame_names:
                raise DatasetError(
                    f"{mask}: no frame named {mask.stem} in {image_dir / name}; its objects would be lost"
                )
        first = frame_names.index(masks[0].stem)
        size_source = _image_files(size_dir / name)[0] if size_dir else frames[0]
        save = None
        if meta is not None:
            if name not in meta:
                raise DatasetError(f"{_resolve(root, cfg.meta or '')}: video {name} is missing")
            save = meta[name]
        videos.append(
            EvalVideo(
                name=name,
                frames=frames[first:],
                output_size=_image_size(size_source),
                mask_files={p.stem: p for p in fed},
                save=save,
                void_label=cfg.void_label,
            )
        )
    return videos


def _burst_videos(cfg: DatasetConfig, protocol: Protocol, root: Path) -> list[EvalVideo]:
    assert cfg.burst_json is not None
    json_path = _resolve(root, cfg.burst_json)
    data = _read_json(json_path, "dataset.burst_json")
    image_root = _resolve(root, protocol.image_dir)
    videos = []
    for seq in data.get("sequences", []) if isinstance(data, dict) else []:
        try:
            name = f"{seq['dataset']}{BURST_SEPARATOR}{seq['seq_name']}"
            folder = image_root / seq["dataset"] / seq["seq_name"]
            all_frames = [folder / p for p in seq["all_image_paths"]]
            annotated = [Path(p).stem for p in seq["annotated_image_paths"]]
            segmentations = seq["segmentations"]
            height, width = int(seq["height"]), int(seq["width"])
            masks: dict[str, dict[int, dict[str, Any]]] = {
                frame: {int(t): {"size": [height, width], "counts": v["rle"]} for t, v in tracks.items()}
                for frame, tracks in zip(annotated, segmentations)
                if tracks
            }
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise DatasetError(f"{json_path}: malformed sequence entry ({err})") from err
        stems = [p.stem for p in all_frames]
        if len(segmentations) != len(annotated):
            raise DatasetError(
                f"{json_path}: {name}: {len(segmentations)} segmentations for {len(annotated)} annotated frames"
            )
        missing = [frame for frame in masks if frame not in stems]
        if missing:
            raise DatasetError(f"{json_path}: {name}: annotated frame {missing[0]} is not in all_image_paths")
        if not masks:
            continue
        first_frame = min(masks, key=stems.index)
        first = stems.index(first_frame)
        fed = masks if protocol.use_all_masks else {first_frame: masks[first_frame]}
        videos.append(
            EvalVideo(
                name=name,
                frames=all_frames[first:],
                output_size=(height, width),
                burst_masks=fed,
                save=None if protocol.save_all else set(annotated),
                burst_sequence=seq,
                burst_json=json_path,
                void_label=cfg.void_label,
            )
        )
    if not videos:
        raise DatasetError(f"{json_path}: no sequence with an annotated object")
    return videos


def list_videos(cfg: DatasetConfig, protocol: Protocol) -> list[EvalVideo]:
    """Every video of the preset, in order."""
    root = Path(cfg.root)
    if cfg.layout == "burst":
        return _burst_videos(cfg, protocol, root)
    return _folder_videos(cfg, protocol, root)
