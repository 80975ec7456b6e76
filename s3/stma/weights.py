"""STMA weight files (local files only): backbone checkpoints in their original layouts, the
mask encoder's ResNet-18, and whole STMA checkpoints.

Backbone formats (``model.backbone.weights_format``):

- ``convmae``: a ConvMAE ConvViT-B checkpoint (``patch_embed1-4``, ``blocks1-3``, ``norm``). The
  pre-training decoder (``decoder_*``, ``mask_token``), the pre-training multi-scale fusion convs
  (``stage1_output_decode``, ``stage2_output_decode``) and a classifier (``head``, ``fc_norm``) are
  dropped; ``blocks3`` becomes ``blocks`` and the convolutional blocks' ``conv1`` / ``attn`` /
  ``conv2`` become ``pointwise_in`` / ``depthwise`` / ``pointwise_out``.
- ``mae``: an MAE ViT-B/16 checkpoint; ``cls_token``, the decoder and a classifier are dropped.
- ``mocov3``: a MoCo v3 ViT-B/16 pre-training checkpoint (``module.base_encoder.*``; the momentum
  encoder, the predictor and the projection head are dropped), or its DeiT-style export (plain keys).

Every format drops ``pos_embed``: STMA regenerates the fixed 2-D sin-cos table for each input grid
(the pre-training tables of all three are that same fixed table at 14x14). Every problem is a
:class:`~s3.model.weights.CheckpointError` whose one-line message names the config key.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from torch import Tensor, nn

from s3.model.weights import CheckpointError, load_strict, read_state_dict
from s3.stma.convvit import ConvViT, PlainViT

_CONVMAE_DROPPED = (
    "decoder",
    "mask_token",
    "stage1_output_decode",
    "stage2_output_decode",
    "head.",
    "fc_norm.",
    "pos_embed",
)
_VIT_DROPPED = ("decoder", "mask_token", "head.", "fc_norm.", "cls_token", "pos_embed")
_CONVMAE_RENAMES = [
    (re.compile(r"^blocks3\."), "blocks."),
    (re.compile(r"^(blocks[12]\.\d+)\.conv1\."), r"\1.pointwise_in."),
    (re.compile(r"^(blocks[12]\.\d+)\.attn\."), r"\1.depthwise."),
    (re.compile(r"^(blocks[12]\.\d+)\.conv2\."), r"\1.pointwise_out."),
]
_MOCOV3_PREFIXES = ("module.base_encoder.", "base_encoder.")


def _convmae(sd: dict[str, Tensor]) -> dict[str, Tensor]:
    if not any(k.startswith("patch_embed1.") for k in sd):
        raise CheckpointError(f"not a ConvMAE checkpoint: no 'patch_embed1.*' keys (first keys: {list(sd)[:3]})")
    out = {}
    for name, tensor in sd.items():
        if name.startswith(_CONVMAE_DROPPED):
            continue
        for pattern, replacement in _CONVMAE_RENAMES:
            name = pattern.sub(replacement, name)
        out[name] = tensor
    return out


def _mae(sd: dict[str, Tensor]) -> dict[str, Tensor]:
    return {k: v for k, v in sd.items() if not k.startswith(_VIT_DROPPED)}


def _mocov3(sd: dict[str, Tensor]) -> dict[str, Tensor]:
    prefix = next((p for p in _MOCOV3_PREFIXES if any(k.startswith(p) for k in sd)), None)
    if prefix is not None:
        sd = {k[len(prefix) :]: v for k, v in sd.items() if k.startswith(prefix)}
    elif any(k.startswith(("module.", "momentum_encoder.")) for k in sd):
        raise CheckpointError(f"MoCo v3 checkpoint without 'module.base_encoder.*' keys (first keys: {list(sd)[:3]})")
    return _mae(sd)


_FORMATS: dict[str, tuple[type[nn.Module], Callable[[dict[str, Tensor]], dict[str, Tensor]]]] = {
    "convmae": (ConvViT, _convmae),
    "mae": (PlainViT, _mae),
    "mocov3": (PlainViT, _mocov3),
}


def load_backbone_weights(
    backbone: nn.Module, path: str, weights_format: str, key: str = "model.backbone.weights"
) -> None:
    """Load a local backbone checkpoint in ``weights_format``'s original layout into ``backbone``
    (``pixel_encoder``) strictly. Errors name ``key`` and list the first missing, unexpected or
    mis-shaped parameter names."""
    if weights_format not in _FORMATS:
        raise CheckpointError(
            f"{key}: unknown backbone weights format {weights_format!r}; choose from {sorted(_FORMATS)}"
        )
    expected, convert = _FORMATS[weights_format]
    if not isinstance(backbone, expected):
        raise CheckpointError(
            f"{key}: format {weights_format} holds a {expected.__name__}, "
            f"but the backbone is a {type(backbone).__name__}"
        )
    sd = read_state_dict(path, key)
    try:
        converted = convert(sd)
    except CheckpointError as err:
        raise CheckpointError(f"{key}: {path}: {err}") from err
    load_strict(backbone, converted, f"{key} ({path}, format {weights_format})")


def load_mask_encoder_weights(network: nn.Module, path: str, key: str = "model.mask_encoder_weights") -> None:
    """Load a torchvision ResNet-18 state dict into ``network.mask_encoder`` (conv1 widened to 5 channels)."""
    state_dict = read_state_dict(path, key)
    try:
        network.mask_encoder.load_resnet18_state_dict(state_dict)
    except ValueError as err:
        raise CheckpointError(f"{key} ({path}): {err}") from err


def load_stma_checkpoint(network: nn.Module, path: str, key: str = "model.weights") -> None:
    """Load a whole STMA state dict (our layout, e.g. a training run's weights file) strictly."""
    load_strict(network, read_state_dict(path, key), f"{key} ({path})")
