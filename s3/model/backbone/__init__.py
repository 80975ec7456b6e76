"""The frozen ViT backbone and its checkpoint loaders (exported lazily: timm loads with the ViT only)."""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "FrozenViT": "s3.model.backbone.vit",
    "convert_vit_state_dict": "s3.model.backbone.vit_weights",
    "load_vit_weights": "s3.model.backbone.vit_weights",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name]), name)
