"""Loading pre-trained ViT checkpoints (local files only) into :class:`FrozenViT`.

Supported layouts (``model.backbone.weights_format``):
- ``depth_anything``: a Depth Anything model; encoder keys are prefixed ``pretrained.`` and the
  depth head is ignored.
- ``dinov2``: the original DINOv2 release (also with chunked ``blocks.<chunk>.<i>.`` names).
- ``timm``: a timm ``VisionTransformer`` state dict (classifier head ignored).
- ``mae``: an MAE pre-training checkpoint (decoder ignored).
All of them share DINOv2/timm parameter names once unwrapped. Patch kernels of another size
(14x14) are bilinearly resized to the model's (align_corners=True, no rescaling, as the reference),
and a position table of another grid is resized with bicubic interpolation.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor

from s3.model.weights import CheckpointError, load_strict, read_state_dict

if TYPE_CHECKING:
    from s3.model.backbone.vit import FrozenViT

_CHUNKED_BLOCK = re.compile(r"^blocks\.\d+\.(\d+)\.")


def _depth_anything(sd: dict[str, Tensor]) -> dict[str, Tensor]:
    prefix = "pretrained."
    out = {k[len(prefix) :]: v for k, v in sd.items() if k.startswith(prefix)}
    if not out:
        raise CheckpointError(f"not a Depth Anything checkpoint: no '{prefix}*' keys (first keys: {list(sd)[:3]})")
    return out


def _dinov2(sd: dict[str, Tensor]) -> dict[str, Tensor]:
    return {_CHUNKED_BLOCK.sub(r"blocks.\1.", k): v for k, v in sd.items()}


def _timm(sd: dict[str, Tensor]) -> dict[str, Tensor]:
    return {k: v for k, v in sd.items() if not k.startswith(("head.", "fc_norm.", "head_drop."))}


def _mae(sd: dict[str, Tensor]) -> dict[str, Tensor]:
    # The MAE decoder, its mask token and any fine-tuning head are not part of the encoder.
    return {
        k: v
        for k, v in sd.items()
        if not k.startswith(("decoder", "mask_token", "head.", "fc_norm."))
    }


_FORMATS: dict[str, Callable[[dict[str, Tensor]], dict[str, Tensor]]] = {
    "depth_anything": _depth_anything,
    "dinov2": _dinov2,
    "timm": _timm,
    "mae": _mae,
}


def _fit_patch_kernel(weight: Tensor, patch_size: int) -> Tensor:
    if weight.shape[-1] == patch_size and weight.shape[-2] == patch_size:
        return weight
    return F.interpolate(weight.float(), size=(patch_size, patch_size), mode="bilinear", align_corners=True)


def _fit_pos_embed(pos: Tensor, grid: int) -> Tensor:
    tokens = pos.shape[1] - 1
    side = int(round(tokens**0.5))
    if side * side != tokens:
        raise CheckpointError(f"pos_embed with {tokens} patch rows is not a square grid")
    if side == grid:
        return pos
    table = pos[:, 1:].reshape(1, side, side, -1).permute(0, 3, 1, 2).float()
    table = F.interpolate(table, size=(grid, grid), mode="bicubic", align_corners=False)
    return torch.cat([pos[:, :1], table.flatten(2).transpose(1, 2)], dim=1)


def convert_vit_state_dict(sd: dict[str, Tensor], weights_format: str, vit: FrozenViT) -> dict[str, Tensor]:
    """Map a checkpoint of ``weights_format`` to :class:`FrozenViT` names and shapes."""
    if weights_format not in _FORMATS:
        raise CheckpointError(f"unknown ViT weights format {weights_format!r}; choose from {sorted(_FORMATS)}")
    out = _FORMATS[weights_format](sd)
    if "patch_embed.proj.weight" in out:
        out["patch_embed.proj.weight"] = _fit_patch_kernel(out["patch_embed.proj.weight"], vit.patch_size)
    if "pos_embed" in out:
        out["pos_embed"] = _fit_pos_embed(out["pos_embed"], vit.pos_grid)
    if "mask_token" in out and out["mask_token"].dim() == 3:  # some exports keep (1, 1, C)
        out["mask_token"] = out["mask_token"].reshape(1, -1)
    return out


def load_vit_weights(vit: FrozenViT, path: str, weights_format: str, key: str = "model.backbone.weights") -> None:
    """Load a local ViT checkpoint into ``vit`` strictly (the unused mask token may be absent).

    Errors name ``key`` (the config key of the file) and list the first offending parameter names.
    """
    sd = read_state_dict(path, key)
    try:
        converted = convert_vit_state_dict(sd, weights_format, vit)
    except CheckpointError as err:
        raise CheckpointError(f"{key}: {path}: {err}") from err
    load_strict(vit, converted, f"{key} ({path}, format {weights_format})", allow_missing=("mask_token",))
