"""The checkpoint-conversion job behind ``scripts/convert_checkpoint.py``: a whole checkpoint (the
authors' layout, or ours) rewritten in our layout, checked strictly against the configured model
before anything is written."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from s3.config import to_model_config
from s3.config.jobs import ConvertConfig, job_config
from s3.config.validation import ConfigError
from s3.model.weights import atomic_save, load_network_weights, trainable_state_dict
from s3.run.architectures import architecture


def convert_checkpoint(cfg: ConvertConfig, model_cfg: Any) -> str:
    """Read ``cfg.src``, load it strictly into the model of ``model_cfg`` (built on the meta device, so
    no memory is spent on random weights) and write ``cfg.out``; returns a one-line account."""
    src, out = Path(cfg.src), Path(cfg.out)
    if out.resolve() == src.resolve():
        raise ConfigError(f"out={out} would overwrite src")
    with torch.device("meta"):
        network = architecture(model_cfg).new_network(model_cfg)
    network = network.to_empty(device="cpu")
    layout = load_network_weights(network, str(src), key="src")
    state = trainable_state_dict(network) if cfg.drop_vit else network.state_dict()
    atomic_save(state, out)
    return f"read {src} ({layout} layout), wrote {len(state)} tensors in our layout to {out}"


def convert_from_config(node: DictConfig) -> str:
    """The job on a composed ``convert_checkpoint`` config."""
    cfg: ConvertConfig = job_config(node, ConvertConfig, leave_out=("model",))
    return convert_checkpoint(cfg, to_model_config(node.model))
