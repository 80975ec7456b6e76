"""The registry of model architectures: how each one is built, trained and run on a video.

A model config names its architecture in ``model.arch`` (its schema is ``s3.config.MODEL_SCHEMAS``
under the same name). Jobs look the architecture up here and never branch on it: the trainer gets
``build_network`` and ``clip_model``, evaluation and the Python API get ``processor``. A second
model plugs in by adding one :class:`Architecture` entry.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from torch import nn

from s3.config.inference import InferenceConfig
from s3.config.train import StageConfig
from s3.config.validation import ConfigError
from s3.inference.processor import VideoProcessor
from s3.model.build import build_network
from s3.model.network import S3Network
from s3.stma.build import build_stma_network
from s3.stma.clip_model import STMAClipModel
from s3.stma.network import STMANetwork
from s3.stma.processor import STMAVideoProcessor
from s3.train.recurrent import RecurrentClipModel


@dataclass(frozen=True)
class Architecture:
    """The code of one architecture."""

    name: str
    new_network: Callable[[Any], nn.Module]  # model config -> network with fresh weights, no file read
    build_network: Callable[[Any], nn.Module]  # model config -> network, every configured weight file loaded
    clip_model: Callable[[nn.Module, StageConfig], nn.Module]  # (network, stage) -> training clip forward
    processor: Callable[[nn.Module, InferenceConfig], Any]  # (network, settings) -> streaming video engine


def _s3_clip_model(network: nn.Module, stage: StageConfig) -> nn.Module:
    return RecurrentClipModel(network, stage.num_ref_frames, stage.deep_update_prob)


def _stma_clip_model(network: nn.Module, stage: StageConfig) -> nn.Module:
    return STMAClipModel(network, stage.num_ref_frames)


ARCHITECTURES: dict[str, Architecture] = {
    "s3": Architecture(
        name="s3",
        new_network=S3Network,
        build_network=build_network,
        clip_model=_s3_clip_model,
        processor=VideoProcessor,
    ),
    "stma": Architecture(
        name="stma",
        new_network=STMANetwork,
        build_network=build_stma_network,
        clip_model=_stma_clip_model,
        processor=STMAVideoProcessor,
    ),
}


def architecture(model_cfg: Any) -> Architecture:
    """The architecture of a validated model config (its ``arch``)."""
    arch = getattr(model_cfg, "arch", None)
    if arch not in ARCHITECTURES:
        raise ConfigError(f"model.arch={arch!r} is not one of {sorted(ARCHITECTURES)}")
    return ARCHITECTURES[arch]


def build_model(model_cfg: Any) -> nn.Module:
    """The network of ``model_cfg`` with every configured weight file loaded (nothing is downloaded)."""
    return architecture(model_cfg).build_network(model_cfg)


def make_processor(network: nn.Module, model_cfg: Any, settings: InferenceConfig) -> Any:
    """The streaming engine of ``model_cfg``'s architecture over ``network``."""
    return architecture(model_cfg).processor(network, settings)

