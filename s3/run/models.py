"""Ready models in one call, for notebooks and scripts of your own.

    from s3.run import load_model, load_processor
    network = load_model("s3_vitb", weights="checkpoints/s3_vitb.pth")              # eval mode
    processor = load_processor("s3_tiny", weights="runs/x/weights/main.pth", settings=InferenceConfig(top_k=20))
    prediction = processor.step(image, mask)   # then processor.step(image) for every later frame

The config name is a file of ``configs/model/``; ``overrides`` are ``model.*`` overrides as on the
command line (``["model.query.read=cutie"]``). Nothing is downloaded: weights are local files.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, Optional

from torch import nn

from s3.config import load_model_config
from s3.config.inference import InferenceConfig
from s3.run.architectures import build_model, make_processor
from s3.run.runtime import select_device


def load_model(
    name: str = "s3_vitb",
    weights: Optional[str] = None,
    overrides: Sequence[str] = (),
    device: str = "auto",
) -> nn.Module:
    """Compose ``configs/model/<name>.yaml`` with ``overrides``, build the network, load ``weights``
    (a whole checkpoint, our layout or the authors'; None keeps the config's own weight keys) and
    return it on ``device`` (auto: CUDA when available) in eval mode. ``network.cfg`` is its config."""
    model_cfg = load_model_config(name, overrides)
    if weights is not None:
        model_cfg = dataclasses.replace(model_cfg, weights=weights)
    return build_model(model_cfg).to(select_device(device)).eval()


def load_processor(
    name: str = "s3_vitb",
    weights: Optional[str] = None,
    overrides: Sequence[str] = (),
    settings: Optional[InferenceConfig] = None,
    device: str = "auto",
) -> Any:
    """:func:`load_model`, wrapped in its architecture's streaming engine (``settings``: the engine's
    :class:`InferenceConfig`, default values when None). Feed it one frame at a time with ``step``."""
    network = load_model(name, weights, overrides, device)
    return make_processor(network, network.cfg, settings or InferenceConfig())
