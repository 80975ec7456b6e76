"""Cut-and-paste: lay the objects of a second clip over a first one.

Pixels of the pasted objects are blended in with an alpha made by blurring their union mask with a
5x5 Gaussian (sigma 1), so the seams are soft; the label maps take the pasted objects' ids, shifted
above every id of the first clip so the two clips' objects never share an id. Objects of the first
clip hidden behind pasted ones lose those pixels (and may vanish from the first frame altogether).
"""

from __future__ import annotations

import torch
from torchvision.transforms.v2 import functional as F

ALPHA_KERNEL_SIZE = 5
ALPHA_SIGMA = 1.0


def paste_alpha(objects: torch.Tensor) -> torch.Tensor:
    """Soft alpha (T, 1, H, W) in [0, 1] from the pasted objects' union mask (T, H, W)."""
    mask = objects.to(torch.float32).unsqueeze(1)
    return F.gaussian_blur(mask, [ALPHA_KERNEL_SIZE, ALPHA_KERNEL_SIZE], [ALPHA_SIGMA, ALPHA_SIGMA])


def paste_clip(
    frames: torch.Tensor, labels: torch.Tensor, other_frames: torch.Tensor, other_labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Blend the objects of (other_frames, other_labels) over (frames, labels).

    All clips are float (T, 3, H, W) frames and int64 (T, H, W) label maps of equal size. Returns the
    blended frames and labels in which pasted object ``i`` is ``i + labels.max()``.
    """
    if frames.shape != other_frames.shape or labels.shape != other_labels.shape:
        raise ValueError(
            f"cannot paste clips of different shapes: {tuple(frames.shape)} / {tuple(labels.shape)} "
            f"and {tuple(other_frames.shape)} / {tuple(other_labels.shape)}"
        )
    pasted = other_labels > 0
    alpha = paste_alpha(pasted)
    merged_frames = alpha * other_frames + (1.0 - alpha) * frames
    merged_labels = torch.where(pasted, other_labels + labels.max(), labels)
    return merged_frames, merged_labels
