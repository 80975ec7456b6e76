"""Video data: mask files and the synthetic VOS video generator (exported lazily: OpenCV loads with
the generator only)."""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "davis_palette": "s3.data.palette",
    "read_mask": "s3.data.palette",
    "write_mask": "s3.data.palette",
    "ObjectPlan": "s3.data.synthetic",
    "SyntheticVideo": "s3.data.synthetic",
    "VideoPlan": "s3.data.synthetic",
    "generate_dataset": "s3.data.synthetic",
    "plan_video": "s3.data.synthetic",
    "prepare_root": "s3.data.synthetic",
    "render_plan": "s3.data.synthetic",
    "render_video": "s3.data.synthetic",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name]), name)
