"""Video-name lists and empty-frame lists: the small text files that filter training videos.

* A video list has one video name per line (subset or exclusion lists).
* An empty-frame list has one ``<video>/<frame>`` line per frame whose mask holds no object; the
  sampler never starts a clip on such a frame, without having to open its PNG.

Blank lines and lines starting with ``#`` are ignored. Lists shipped with the package live in
``s3/data/lists/``; a config value that is a bare file name refers to one of them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from s3.config.validation import ConfigError, InputError
from s3.data.palette import VOID_LABEL, read_mask
from s3.data.video_folders import VideoRecord

SHIPPED_LISTS_DIR = Path(__file__).resolve().parent / "lists"


def resolve_list_path(value: str, key: str) -> Path:
    """The file a list setting names: a bare file name is a shipped list, anything else a path."""
    path = SHIPPED_LISTS_DIR / value if Path(value).name == value else Path(value).expanduser()
    if not path.is_file():
        where = f"shipped lists in {SHIPPED_LISTS_DIR}" if path.parent == SHIPPED_LISTS_DIR else "disk"
        raise ConfigError(f"{key}: list file not found: {path} (looked among {where})")
    return path


def _content_lines(path: Path) -> list[tuple[int, str]]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [(n, s) for n, s in ((n, line.strip()) for n, line in enumerate(lines, 1)) if s and not s.startswith("#")]


def read_video_names(path: Path) -> list[str]:
    """The video names of a list file, in file order."""
    return [line for _, line in _content_lines(path)]


def write_video_names(path: Path, names: Iterable[str], header: str = "") -> None:
    """Write one name per line, with an optional ``#`` comment header."""
    comment = "".join(f"# {line}\n" for line in header.splitlines())
    path.write_text(comment + "".join(f"{name}\n" for name in names), encoding="utf-8")


def read_empty_frames(path: Path) -> dict[str, set[str]]:
    """``{video: {frame names}}`` from an empty-frame list."""
    empty: dict[str, set[str]] = {}
    for number, line in _content_lines(path):
        video, sep, frame = line.rpartition("/")
        if not (sep and video and frame):
            raise InputError(f"{path}:{number}: expected '<video>/<frame>', got {line!r}")
        empty.setdefault(video, set()).add(frame)
    return empty


def write_empty_frames(path: Path, empty: dict[str, Sequence[str]], header: str = "") -> None:
    """Write ``<video>/<frame>`` lines, videos and frames sorted."""
    lines = (f"{video}/{frame}" for video in sorted(empty) for frame in sorted(empty[video]))
    write_video_names(path, lines, header)


def is_empty_mask(labels: np.ndarray) -> bool:
    """True if the label map holds no object (void 255 does not count: training maps it to background)."""
    return not np.any((labels != 0) & (labels != VOID_LABEL))


def find_empty_frames(videos: Sequence[VideoRecord], show_progress: bool = True) -> dict[str, list[str]]:
    """``{video: [frames with an empty mask]}`` for the videos that have any, by reading every mask."""
    empty: dict[str, list[str]] = {}
    for video in tqdm(videos, desc="scanning masks", unit="video", disable=not show_progress):
        frames = [f for f, p in zip(video.frames, video.mask_paths) if is_empty_mask(read_mask(p))]
        if frames:
            empty[video.name] = frames
    return empty
