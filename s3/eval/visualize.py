"""Overlay images and an mp4 per video (``visualize=true``): each object tinted with its DAVIS
palette colour at half opacity."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import cv2
import numpy as np

from s3.data.palette import davis_palette

OVERLAY_ALPHA = 0.5


def overlay(image: np.ndarray, id_mask: np.ndarray, alpha: float = OVERLAY_ALPHA) -> np.ndarray:
    """image (H, W, 3) uint8 RGB, id_mask (H, W) object ids -> (H, W, 3) uint8 RGB; background pixels
    are unchanged, object pixels are blended with the object's palette colour (ids taken modulo 256)."""
    if image.shape[:2] != id_mask.shape:
        raise ValueError(f"overlay: image {image.shape[:2]} and mask {id_mask.shape} sizes differ")
    colours = davis_palette()[np.asarray(id_mask).astype(np.int64) % 256].astype(np.float32)  # any int dtype
    blended = image.astype(np.float32) * (1 - alpha) + colours * alpha
    out = np.where((id_mask != 0)[..., None], blended, image.astype(np.float32))
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


class OverlayWriter:
    """Writes ``<folder>/<frame>.jpg`` overlays (unless ``save_images`` is false) and ``<folder>.mp4``
    for one video."""

    def __init__(self, folder: Path, fps: float = 10.0, save_images: bool = True) -> None:
        self.folder = folder
        self.fps = fps
        self.save_images = save_images
        self.video: Optional[cv2.VideoWriter] = None
        (folder if save_images else folder.parent).mkdir(parents=True, exist_ok=True)

    def add(self, frame_name: str, image: np.ndarray, id_mask: np.ndarray) -> None:
        """image (H, W, 3) uint8 RGB at the mask's size; id_mask (H, W)."""
        bgr = cv2.cvtColor(overlay(image, id_mask), cv2.COLOR_RGB2BGR)
        if self.save_images:
            cv2.imwrite(str(self.folder / f"{frame_name}.jpg"), bgr)
        if self.video is None:
            height, width = bgr.shape[:2]
            path = self.folder.with_suffix(".mp4")
            self.video = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, (width, height))
            if not self.video.isOpened():
                raise ValueError(f"{path}: OpenCV cannot write an mp4 here")
        self.video.write(bgr)

    def close(self) -> None:
        if self.video is not None:
            self.video.release()
            self.video = None
