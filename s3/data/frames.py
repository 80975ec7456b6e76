"""Frame files on disk: which suffixes count as images, and listing a video's frames in order."""

from __future__ import annotations

from pathlib import Path

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def list_frames(folder: Path) -> list[Path]:
    """The image files of ``folder`` sorted by name (frame order in every VOS layout)."""
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
