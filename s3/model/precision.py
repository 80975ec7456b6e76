"""Numeric precision of the network's steps: one vocabulary (``fp32 | bf16 | fp16``) for every job.

``fp32`` runs without autocast. ``bf16`` autocasts to bfloat16 on the CPU and on CUDA. ``fp16``
autocasts to float16 on CUDA only (float16 matmuls on a CPU are slow and lose range). Inside
autocast, the parts that need fp32 keep it on purpose: the memory readout's similarity and
softmax, the sigmoid/soft aggregation of the decoder's logits, and the losses compute in fp32.
"""

from __future__ import annotations

import contextlib
from typing import Optional

import torch

PRECISION_DTYPES: dict[str, Optional[torch.dtype]] = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def autocast_dtype(precision: str, device: torch.device, key: str = "precision") -> Optional[torch.dtype]:
    """The autocast dtype of ``precision`` on ``device`` (None: fp32); a pairing that cannot run raises
    ValueError naming ``key``."""
    if precision not in PRECISION_DTYPES:
        raise ValueError(f"{key}={precision!r} is not one of {list(PRECISION_DTYPES)}")
    if precision == "fp16" and device.type != "cuda":
        raise ValueError(f"{key}=fp16 needs a CUDA device (this one is {device.type}); use bf16 or fp32")
    return PRECISION_DTYPES[precision]


def autocast(device: torch.device, dtype: Optional[torch.dtype]) -> contextlib.AbstractContextManager:
    """``torch.autocast`` on ``device`` to ``dtype``, or a no-op context for None (fp32)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def compute_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype the matrix products on ``x``'s device run in: autocast's when it is on, else ``x.dtype``.

    Feature maps and token streams that only feed such products (and cheap elementwise steps) are
    kept in it, so that autocast does not convert them back and forth at every layer.
    """
    device = x.device.type
    if torch.is_autocast_enabled(device):
        return torch.get_autocast_dtype(device)
    return x.dtype


def has_native_bf16(device: torch.device) -> bool:
    """Whether ``device`` multiplies bfloat16 matrices in hardware (CUDA: compute capability 8+; CPU:
    avx512_bf16 or AMX, as oneDNN reports). Elsewhere bf16 is emulated, often far slower than fp32
    (tens of times on an AVX2-only CPU)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type == "cpu":
        try:
            return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):  # a build without oneDNN
            return False
    return False
