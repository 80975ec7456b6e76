"""Convert BURST training annotations (JSON, COCO RLE) to the VOS folder layout.

BURST keeps frames under ``<frames_root>/<dataset>/<seq_name>/`` and one JSON per split whose
``sequences`` each list ``annotated_image_paths`` and, aligned with them, ``segmentations``:
``{track_id: {"rle": <COCO counts string>, ...}}`` on a ``height`` x ``width`` frame.

The conversion writes, for every annotated frame, the JPEG and an indexed PNG whose pixel values are
the track ids (``Annotations/<video>/<frame>.png``, ``JPEGImages/<video>/<frame>.jpg``), under a video
folder named ``<dataset>_-_<seq_name>``. Frames without annotation are not copied (training samples
annotated frames only). Where tracks overlap, the larger track id wins.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from s3.config.validation import InputError, first_line
from s3.data.palette import write_mask
from s3.data.rle import rle_decode

VIDEO_NAME_SEPARATOR = "_-_"
MAX_TRACK_ID = 254  # ids must fit an indexed PNG; 255 is void


def burst_video_name(dataset: str, seq_name: str) -> str:
    """The VOS folder name of a BURST sequence."""
    return f"{dataset}{VIDEO_NAME_SEPARATOR}{seq_name}"


def split_burst_video_name(video: str) -> tuple[str, str]:
    """(dataset, seq_name) of a VOS folder name made by ``burst_video_name``."""
    dataset, sep, seq_name = video.partition(VIDEO_NAME_SEPARATOR)
    if not (sep and dataset and seq_name):
        raise ValueError(f"{video!r} is not a BURST video name '<dataset>{VIDEO_NAME_SEPARATOR}<seq_name>'")
    return dataset, seq_name


def sequence_label_maps(sequence: dict[str, Any]) -> Iterator[tuple[str, np.ndarray]]:
    """(annotated image path, uint8 track-id map (H, W)) for every annotated frame of a sequence."""
    height, width = int(sequence["height"]), int(sequence["width"])
    paths, segmentations = sequence["annotated_image_paths"], sequence["segmentations"]
    if len(paths) != len(segmentations):
        raise ValueError(f"{len(paths)} annotated_image_paths but {len(segmentations)} segmentations")
    for image_path, tracks in zip(paths, segmentations):
        labels = np.zeros((height, width), dtype=np.uint8)
        for track_id in sorted(tracks, key=int):
            if not 0 < int(track_id) <= MAX_TRACK_ID:
                raise ValueError(f"frame {image_path}: track id {track_id} is outside 1..{MAX_TRACK_ID}")
            labels[rle_decode({"size": [height, width], "counts": tracks[track_id]["rle"]})] = int(track_id)
        yield image_path, labels


def convert_sequence(sequence: dict[str, Any], frames_root: Path, output_root: Path) -> str:
    """Write one sequence's annotated frames and masks; returns its video name."""
    video = burst_video_name(sequence["dataset"], sequence["seq_name"])
    source_dir = frames_root / sequence["dataset"] / sequence["seq_name"]
    image_dir = output_root / "JPEGImages" / video
    mask_dir = output_root / "Annotations" / video
    image_dir.mkdir(parents=True, exist_ok=True)
    mask_dir.mkdir(parents=True, exist_ok=True)
    for image_path, labels in sequence_label_maps(sequence):
        source = source_dir / image_path
        if not source.is_file():
            raise FileNotFoundError(f"frame not found: {source}")
        stem = Path(image_path).stem
        shutil.copyfile(source, image_dir / f"{stem}{source.suffix.lower()}")
        write_mask(mask_dir / f"{stem}.png", labels)
    return video


def convert_burst(
    annotations: Path, frames_root: Path, output_root: Path, show_progress: bool = True
) -> list[str]:
    """Convert every sequence of a BURST JSON file; returns the video names written."""
    try:
        with open(annotations, encoding="utf-8") as file:
            content = json.load(file)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InputError(f"{annotations}: not valid JSON, truncated? ({first_line(err)})") from None
    if not isinstance(content, dict) or "sequences" not in content:
        raise InputError(f"{annotations}: no 'sequences' list (not a BURST annotation file)")
    videos = []
    for index, sequence in enumerate(tqdm(content["sequences"], desc="BURST -> VOS", disable=not show_progress)):
        try:
            videos.append(convert_sequence(sequence, frames_root, output_root))
        except (KeyError, TypeError, ValueError) as err:
            raise InputError(f"{annotations}: sequence {index}: {type(err).__name__}: {first_line(err)}") from err
    return videos
