"""Weight files of the network: reading them, loading them strictly, writing them atomically, and
the authors' (reference) layout of a whole S3 checkpoint.

Every file is read with ``torch.load(..., weights_only=True)``; every problem is a
:class:`CheckpointError` whose one-line message names the config key that named the file.

Our parameter names follow the reference implementation where its names are clear and rename
the rest (``vit_module`` -> ``vit``, ``interactions`` -> ``blocks``, ``extractor`` /
``extra_extractors.k`` -> ``units.0`` / ``units.k+1``, ``d_proj`` -> ``shrinkage_proj``, ...).
:func:`reference_to_ours` maps an official S3 state dict (705 entries, listed in the shared
``s3_reference_state_dict.tsv``) onto our names, so that released weights load.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Callable, Union

import torch
from torch import Tensor, nn

from s3.config.validation import InputError, first_line

# Containers that checkpoint files commonly wrap their weights in, tried in this order.
_CONTAINER_KEYS = ("model", "state_dict", "weights", "network")


class CheckpointError(InputError):
    """A checkpoint file is missing, unreadable, holds NaN/inf, or does not fit the model."""


def load_file(file: Path, key: str) -> Any:
    """``torch.load(file, weights_only=True)`` on the CPU; a missing, empty or unreadable (truncated,
    foreign) file is a CheckpointError naming ``key`` and the file."""
    if not file.is_file():
        raise CheckpointError(f"{key}: file not found: {file}")
    if file.stat().st_size == 0:
        raise CheckpointError(f"{key}: {file} is empty (0 bytes); an interrupted copy or save? use another file")
    try:
        return torch.load(file, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle errors, truncated files, non-tensor payloads
        raise CheckpointError(f"{key}: cannot read {file} (truncated or not a torch file?): {first_line(err)}") from err


def read_state_dict(path: str | None, key: str) -> dict[str, Tensor]:
    """Load a tensor dict from a local file (``torch.load(..., weights_only=True)``).

    ``key`` is the config key that named the file; it is quoted in every error. Common wrappers
    (``{"model": ...}``, ``{"state_dict": ...}``, trainer checkpoints with ``weights``) are unwrapped.
    """
    if not path:
        raise CheckpointError(f"{key}: no file given")
    file = Path(path).expanduser()
    obj = load_file(file, key)
    while isinstance(obj, Mapping) and not _is_tensor_dict(obj):
        inner = next((obj[k] for k in _CONTAINER_KEYS if k in obj and isinstance(obj[k], Mapping)), None)
        if inner is None:
            raise CheckpointError(f"{key}: {file} holds no state dict (top-level keys: {sorted(obj)[:8]})")
        obj = inner
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{key}: {file} holds a {type(obj).__name__}, not a state dict")
    check_finite(obj, f"{key}: {file}")
    return dict(obj)


def check_finite(state_dict: Mapping[str, Any], source: str) -> None:
    """Raise CheckpointError naming ``source`` and the first tensors that hold NaN or inf (a
    diverged run's weights would otherwise segment every frame as background without a word)."""
    bad = [
        name for name, value in state_dict.items()
        if isinstance(value, Tensor) and value.is_floating_point() and not bool(torch.isfinite(value).all())
    ]
    if bad:
        raise CheckpointError(f"{source} holds NaN or inf values in {_first(bad)}; the run that wrote it diverged")


def state_fingerprint(module: nn.Module) -> str:
    """SHA-256 (hex) of every entry of ``module.state_dict()``: names, dtypes, shapes and bytes. Equal
    fingerprints mean equal weights, wherever the weights were read from."""
    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        flat = tensor.detach().to("cpu").contiguous().reshape(-1)
        digest.update(f"{name}|{flat.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(flat.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _is_tensor_dict(obj: Mapping) -> bool:
    return len(obj) > 0 and all(isinstance(v, Tensor) for v in obj.values())


def _first(names: list[str], limit: int = 5) -> str:
    more = f" (+{len(names) - limit} more)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def load_strict(
    module: nn.Module,
    state_dict: Mapping[str, Tensor],
    source: str,
    allow_missing: tuple[str, ...] = (),
) -> None:
    """Load ``state_dict`` into ``module``; any missing, unexpected or mis-shaped entry is an error.

    ``allow_missing`` lists name prefixes that may be absent (they keep their current values).
    The error lists the first few offending names for each kind of problem.
    """
    own = module.state_dict()
    missing = [k for k in own if k not in state_dict and not k.startswith(allow_missing)]
    unexpected = [k for k in state_dict if k not in own]
    mismatched = [
        f"{k} {tuple(state_dict[k].shape)} vs {tuple(own[k].shape)}"
        for k in own
        if k in state_dict and state_dict[k].shape != own[k].shape
    ]
    problems = []
    if missing:
        problems.append(f"missing keys: {_first(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_first(unexpected)}")
    if mismatched:
        problems.append(f"shape mismatches (file vs model): {_first(mismatched)}")
    if problems:
        raise CheckpointError(f"{source}: " + "; ".join(problems))
    module.load_state_dict({k: v for k, v in state_dict.items()}, strict=False)


def trainable_state_dict(module: nn.Module) -> dict[str, Tensor]:
    """The state dict without the frozen parameters (S3's frozen ViT): what a weights file needs when
    the frozen part is reloaded from its own file (``model.backbone.weights``)."""
    frozen = {n for n, p in module.named_parameters() if not p.requires_grad}
    return {k: v for k, v in module.state_dict().items() if k not in frozen}


def atomic_save(obj: Any, path: Path) -> None:
    """``torch.save`` to a temporary file beside ``path``, fsync, then rename it onto ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "wb") as file:
            torch.save(obj, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


# ---------------------------------------------------------------- the authors' layout
Replacement = Union[str, Callable[[re.Match], str]]

# Applied in order to every reference key; each rule rewrites a name fragment.
_REFERENCE_RULES: list[tuple[str, Replacement]] = [
    # spatial-semantic encoder
    (r"^pixel_encoder\.vit_module\.", "pixel_encoder.vit."),
    (r"^pixel_encoder\.spm\.", "pixel_encoder.spatial_prior."),
    (r"^pixel_encoder\.norm1\.", "pixel_encoder.norm_s4."),
    (r"^pixel_encoder\.norm2\.", "pixel_encoder.norm_s8."),
    (r"^pixel_encoder\.norm3\.", "pixel_encoder.norm_s16."),
    (r"^pixel_encoder\.interactions\.(\d+)\.read_from_cls\.cross_attn\.", r"pixel_encoder.blocks.\1.semantic_attn.attn."),
    (r"^pixel_encoder\.interactions\.(\d+)\.read_from_cls\.", r"pixel_encoder.blocks.\1.semantic_attn."),
    (r"^pixel_encoder\.interactions\.(\d+)\.extractor\.", r"pixel_encoder.blocks.\1.units.0."),
    (
        r"^pixel_encoder\.interactions\.(\d+)\.extra_extractors\.(\d+)\.",
        lambda m: f"pixel_encoder.blocks.{m.group(1)}.units.{int(m.group(2)) + 1}.",
    ),
    (r"(\.units\.\d+)\.feat_norm\.", r"\1.value_norm."),
    (r"(\.units\.\d+)\.attn\.sampling_offsets\.", r"\1.deform_attn.offset_proj."),
    (r"(\.units\.\d+)\.attn\.attention_weights\.", r"\1.deform_attn.point_weight_proj."),
    (r"(\.units\.\d+)\.attn\.value_proj\.", r"\1.deform_attn.value_proj."),
    (r"(\.units\.\d+)\.attn\.output_proj\.", r"\1.deform_attn.out_proj."),
    (r"(\.units\.\d+)\.ffn\.dwconv\.dwconv\.", r"\1.ffn.dwconv."),
    # key projection
    (r"^key_proj\.pix_feat_proj\.", "key_proj.feat_proj."),
    (r"^key_proj\.d_proj\.", "key_proj.shrinkage_proj."),
    (r"^key_proj\.e_proj\.", "key_proj.selection_proj."),
    # channel-attention residual blocks (fusers, pixel FFN)
    (r"\.pixel_ffn\.conv\.", ".pixel_ffn."),
    (r"\.(block1|block2|pixel_ffn)\.conv\.weight$", r".\1.channel_gate.weight"),
    # mask decoder
    (r"^mask_decoder\.decoder_feat_proc\.transforms\.0\.", "mask_decoder.skip_proj8."),
    (r"^mask_decoder\.decoder_feat_proc\.transforms\.1\.", "mask_decoder.skip_proj4."),
    (r"^mask_decoder\.(up_16_8|up_8_4)\.out_conv\.", r"mask_decoder.\1."),
    (r"^mask_decoder\.(up_16_8|up_8_4)\.downsample\.", r"mask_decoder.\1.skip."),
    # query transformer
    (r"\.self_attn\.self_attn\.", ".self_attn.attn."),
    (r"\.read_from_query\.cross_attn\.", ".read_from_query.attn."),
    (r"\.read_from_pixel\.proj\.", ".read_from_pixel.mix_proj."),
    (r"\.read_from_pixel\.final\.", ".read_from_pixel.out_proj."),
    (r"(\.blocks\.\d+\.ffn)\.linear1\.", r"\1.fc1."),
    (r"(\.blocks\.\d+\.ffn)\.linear2\.", r"\1.fc2."),
    (r"^object_transformer\.mask_pred\.(\d+)\.1\.", r"object_transformer.aux_heads.\1.proj."),
    # aux computer
    (r"^aux_computer\.sensory_aux\.projection\.", "aux_computer.sensory_head."),
]
_COMPILED_RULES = [(re.compile(p), r) for p, r in _REFERENCE_RULES]

# Key fragments that only the reference layout has.
_REFERENCE_MARKERS = ("pixel_encoder.vit_module.", "pixel_encoder.interactions.", "key_proj.d_proj.", "mask_pred.")


def reference_key_to_ours(key: str) -> str:
    for pattern, replacement in _COMPILED_RULES:
        key = pattern.sub(replacement, key)
    return key


def reference_to_ours(state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
    """Rename an official S3 state dict to our layout (values untouched)."""
    return {reference_key_to_ours(k): v for k, v in state_dict.items()}


def is_reference_layout(state_dict: dict[str, Tensor]) -> bool:
    return any(marker in k for k in state_dict for marker in _REFERENCE_MARKERS)


def load_network_weights(
    network: nn.Module, path: str, key: str = "model.weights", vit_already_loaded: bool = False
) -> str:
    """Load a whole S3 checkpoint (our layout or the reference layout, auto-detected) strictly.

    Our evaluation weights omit the frozen ViT; that is accepted only when the ViT was loaded
    from ``model.backbone.weights`` first (``vit_already_loaded``). Returns the detected layout.
    """
    state_dict = read_state_dict(path, key)
    layout = "reference" if is_reference_layout(state_dict) else "ours"
    if layout == "reference":
        state_dict = reference_to_ours(state_dict)
    allow_missing = ("pixel_encoder.vit.",) if vit_already_loaded else ()
    try:
        load_strict(network, state_dict, f"{key} ({path}, {layout} layout)", allow_missing=allow_missing)
    except CheckpointError as err:
        vit_missing = not any(k.startswith("pixel_encoder.vit.") for k in state_dict)
        if vit_missing and not vit_already_loaded and hasattr(network, "pixel_encoder"):
            raise CheckpointError(
                f"{err}. This file has no ViT weights: also set model.backbone.weights"
            ) from err
        raise
    return layout
