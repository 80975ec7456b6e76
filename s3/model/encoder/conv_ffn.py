"""ConvFFN: a token MLP with a depth-wise 3x3 conv over the stride-8 and stride-16 token maps."""

from __future__ import annotations

import torch
import torch.nn as nn
from torch import Tensor


class ConvFFN(nn.Module):
    """Linear -> shared depth-wise 3x3 conv on each token map -> exact GELU -> Linear -> DropPath.

    The input holds the row-major tokens of an (H8, W8) map followed by those of an (h, w) map; the
    SAME depth-wise conv is applied to both maps separately (zero padding at each map's border).
    The drop path acts on the output, so the module is meant as a residual branch.
    """

    def __init__(self, dim: int, hidden: int, drop_path: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.dwconv = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)
        self.drop_path: nn.Module = nn.Identity()
        if drop_path > 0:
            from timm.layers import DropPath  # loaded with the ViT anyway

            self.drop_path = DropPath(drop_path)

    def forward(self, tokens: Tensor, size8: tuple[int, int], size16: tuple[int, int]) -> Tensor:
        """tokens: (B, H8*W8 + h*w, C), stride-8 tokens first; size8 = (H8, W8); size16 = (h, w).

        Returns (B, H8*W8 + h*w, C) in the same token order.
        """
        sizes = (size8, size16)
        counts = [height * width for height, width in sizes]
        if tokens.shape[1] != sum(counts):
            raise ValueError(
                f"ConvFFN: got {tokens.shape[1]} tokens but maps {size8} and {size16} hold {sum(counts)}"
            )
        hidden = self.fc1(tokens)
        batch, _, channels = hidden.shape
        convolved = []
        for part, (height, width) in zip(hidden.split(counts, dim=1), sizes):
            # tokens are the channels-last layout of the map: both reshapes are views, no transposing copy
            feature_map = part.reshape(batch, height, width, channels).permute(0, 3, 1, 2)
            convolved.append(self.dwconv(feature_map).permute(0, 2, 3, 1).reshape(batch, height * width, channels))
        hidden = self.act(torch.cat(convolved, dim=1))
        return self.drop_path(self.fc2(hidden))
