"""On-disk layouts of annotated training videos, and one video's frame and mask files.

Readers (``READERS``, chosen by ``data.datasets.<name>.reader``):

* ``folder``: ``<root>/JPEGImages/<video>/<frame>.jpg`` + ``<root>/Annotations/<video>/<frame>.png``:
  YouTube-VOS 2019 train, MOSE train, OVIS-VOS-train, BURST train converted by
  ``scripts/convert_burst.py``, LVOS train, and custom data;
* ``davis``: the same below ``JPEGImages/480p`` and ``Annotations/480p``, with the training subset
  defaulting to ``<root>/ImageSets/2017/train.txt``.

Only frames that have a mask are part of a video (YouTube-VOS train annotates every 5th source
frame; ``frame_interval`` records that spacing).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from s3.data.frames import frame_order_key, list_frames


@dataclass(frozen=True)
class VideoRecord:
    """One annotated video: its frames (sorted names without extension) and their files."""

    name: str
    frames: tuple[str, ...]
    image_paths: tuple[Path, ...]
    mask_paths: tuple[Path, ...]


class VideoFolderReader:
    """Videos stored as ``<root>/JPEGImages/<video>/`` and ``<root>/Annotations/<video>/``."""

    image_subdir = Path("JPEGImages")
    mask_subdir = Path("Annotations")

    def __init__(self, root: Path) -> None:
        self.root = root
        self.image_dir = root / self.image_subdir
        self.mask_dir = root / self.mask_subdir

    def default_subset(self) -> Optional[Path]:
        """The list of training videos used when the config names none (None: every video)."""
        return None

    def video_names(self) -> list[str]:
        """Videos that have both a frame folder and a mask folder, sorted."""
        with_masks = {p.name for p in self.mask_dir.iterdir() if p.is_dir()}
        return sorted(p.name for p in self.image_dir.iterdir() if p.is_dir() and p.name in with_masks)

    def read_video(self, name: str) -> VideoRecord:
        """The frames of ``name`` that have a mask, in frame order (``s3.data.frames``)."""
        masks = {p.stem: p for p in (self.mask_dir / name).iterdir() if p.suffix == ".png"}
        images = {p.stem: p for p in list_frames(self.image_dir / name)}
        frames = tuple(sorted(set(masks) & set(images), key=frame_order_key))
        return VideoRecord(
            name=name,
            frames=frames,
            image_paths=tuple(images[f] for f in frames),
            mask_paths=tuple(masks[f] for f in frames),
        )


class DavisReader(VideoFolderReader):
    """DAVIS 2017: 480p frames and masks, training subset from ``ImageSets/2017/train.txt``."""

    image_subdir = Path("JPEGImages") / "480p"
    mask_subdir = Path("Annotations") / "480p"

    def default_subset(self) -> Optional[Path]:
        return self.root / "ImageSets" / "2017" / "train.txt"


READERS: dict[str, type[VideoFolderReader]] = {"davis": DavisReader, "folder": VideoFolderReader}
