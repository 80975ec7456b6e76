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

Masks: a video starts at its first mask frame (earlier frames are neither processed nor written).
Without ``use_all_masks`` only that first mask is fed; with it, every mask file is, and each must
introduce new objects only (see :func:`check_new_objects`), which is what sparse first-appearance
annotations look like and what a ground-truth folder never does.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
from PIL import Image

from s3.config.eval import DatasetConfig, Protocol
from s3.data.frames import list_frames
from s3.data.palette import read_mask
from s3.data.rle import rle_decode

BURST_SEPARATOR = "_-_"


class DatasetError(ValueError):
    """The dataset on disk does not match its preset; the message names the file or folder."""


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

    @property
    def frame_names(self) -> list[str]:
        return [p.stem for p in self.frames]

    def saves(self, frame_name: str) -> bool:
        return self.save is None or frame_name in self.save

    def input_mask(self, frame_name: str) -> Optional[np.ndarray]:
        """The index mask (H, W) int64 of object ids fed at ``frame_name``, or None."""
        if frame_name in self.mask_files:
            return read_mask(self.mask_files[frame_name]).astype(np.int64)
        if frame_name in self.burst_masks:
            labels: Optional[np.ndarray] = None
            for track, rle in sorted(self.burst_masks[frame_name].items()):
                decoded = rle_decode(rle)
                labels = np.zeros(decoded.shape, np.int64) if labels is None else labels
                labels[decoded] = track
            return labels
        return None


def check_new_objects(video: EvalVideo, frame_name: str, ids: list[int], seen: set[int]) -> None:
    """With ``use_all_masks``, a later mask may only add objects: one that repeats an id is ground
    truth, and feeding it would hand the tracker the answer."""
    repeated = sorted(set(ids) & seen)
    if repeated:
        where = video.mask_files.get(frame_name, f"{video.name}/{frame_name}")
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
    with Image.open(path) as image:
        return image.height, image.width


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
    if not meta_path.is_file():
        raise DatasetError(f"{meta_path}: meta.json not found (dataset.meta)")
    try:
        videos = json.loads(meta_path.read_text())["videos"]
        return {
            name: {f for obj in entry["objects"].values() for f in obj["frames"]} for name, entry in videos.items()
        }
    except (KeyError, TypeError, AttributeError, json.JSONDecodeError) as err:
        raise DatasetError(f"{meta_path}: not a YouTube-VOS meta.json ({err})") from err


def _folder_videos(cfg: DatasetConfig, protocol: Protocol, root: Path) -> list[EvalVideo]:
    image_dir = _resolve(root, protocol.image_dir)
    mask_dir = _resolve(root, cfg.mask_dir)
    size_dir = _resolve(root, cfg.output_size_dir) if cfg.output_size_dir else None
    meta = _meta_frames(_resolve(root, cfg.meta)) if cfg.layout == "ytvos" and not protocol.save_all else None
    videos = []
    for name in _video_names(cfg, root, mask_dir):
        frames = _image_files(image_dir / name)
        mask_folder = mask_dir / name
        masks = sorted(mask_folder.glob("*.png")) if mask_folder.is_dir() else []
        if not masks:
            raise DatasetError(f"{mask_folder}: no mask PNG for video {name}")
        frame_names = [p.stem for p in frames]
        if masks[0].stem not in frame_names:
            raise DatasetError(f"{masks[0]}: no frame named {masks[0].stem} in {image_dir / name}")
        first = frame_names.index(masks[0].stem)
        fed = masks if protocol.use_all_masks else masks[:1]
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
                mask_files={p.stem: p for p in fed if p.stem in frame_names[first:]},
                save=save,
            )
        )
    return videos


def _burst_videos(cfg: DatasetConfig, protocol: Protocol, root: Path) -> list[EvalVideo]:
    assert cfg.burst_json is not None
    json_path = _resolve(root, cfg.burst_json)
    if not json_path.is_file():
        raise DatasetError(f"{json_path}: BURST annotation JSON not found (dataset.burst_json)")
    image_root = _resolve(root, protocol.image_dir)
    videos = []
    for seq in json.loads(json_path.read_text()).get("sequences", []):
        try:
            name = f"{seq['dataset']}{BURST_SEPARATOR}{seq['seq_name']}"
            folder = image_root / seq["dataset"] / seq["seq_name"]
            all_frames = [folder / p for p in seq["all_image_paths"]]
            annotated = [Path(p).stem for p in seq["annotated_image_paths"]]
            segmentations = seq["segmentations"]
            height, width = int(seq["height"]), int(seq["width"])
        except (KeyError, TypeError) as err:
            raise DatasetError(f"{json_path}: malformed sequence entry ({err})") from err
        masks: dict[str, dict[int, dict[str, Any]]] = {}
        for frame, tracks in zip(annotated, segmentations):
            if tracks:
                masks[frame] = {int(t): {"size": [height, width], "counts": v["rle"]} for t, v in tracks.items()}
        if not masks:
            continue
        stems = [p.stem for p in all_frames]
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
