"""Typed configuration schemas, registered with Hydra's ConfigStore.

YAML files under ``configs/`` pick values; the dataclasses here define which keys exist, their
types and their valid ranges. ``to_model_config`` turns a composed ``cfg.model`` node into the
validated config of its architecture (``model.arch``: ``MODEL_SCHEMAS``). Nothing here imports
any other part of ``s3``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from omegaconf import DictConfig

from s3.config.data import AugmentationConfig
from s3.config.model import BackboneConfig, EncoderConfig, ModelConfig, QueryConfig
from s3.config.stma import STMAConfig
from s3.config.train import TrainConfig
from s3.config.structured import to_dataclass
from s3.config.validation import ConfigError

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"

__all__ = [
    "BackboneConfig",
    "CONFIG_DIR",
    "ConfigError",
    "EncoderConfig",
    "MODEL_SCHEMAS",
    "ModelConfig",
    "QueryConfig",
    "STMAConfig",
    "compose",
    "load_model_config",
    "register_configs",
    "to_dataclass",
    "to_model_config",
]


def register_configs() -> None:
    """Register the schemas so that YAML files can name them in their defaults lists."""
    from hydra.core.config_store import ConfigStore  # hydra is loaded by the jobs that compose configs only

    cs = ConfigStore.instance()
    cs.store(group="model", name="model_schema", node=ModelConfig)
    cs.store(group="model", name="stma_schema", node=STMAConfig)
    cs.store(group="data/augmentation", name="cutie", node=AugmentationConfig)  # the schema's defaults
    cs.store(name="train_schema", node=TrainConfig)


# model.arch -> the schema of that architecture's model config (the code of each architecture is
# registered under the same name in s3.run.architectures)
MODEL_SCHEMAS: dict[str, type] = {"s3": ModelConfig, "stma": STMAConfig}


def to_model_config(node: DictConfig | dict[str, Any]) -> Any:
    """Merge a composed ``model`` node onto the schema of its ``arch`` and build the validated dataclass."""
    arch = node.get("arch", "s3") if isinstance(node, (dict, DictConfig)) else "s3"
    if arch not in MODEL_SCHEMAS:
        raise ConfigError(f"model.arch={arch!r} is not one of {sorted(MODEL_SCHEMAS)}")
    return to_dataclass(node, MODEL_SCHEMAS[arch], "model")


def compose(config_name: str, overrides: Sequence[str] = ()) -> DictConfig:
    """Compose a top-level config from ``configs/`` (for tests and notebooks; scripts use @hydra.main)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    register_configs()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return hydra_compose(config_name=config_name, overrides=list(overrides))


def load_model_config(name: str = "s3_vitb", overrides: Sequence[str] = ()) -> Any:
    """The validated model config ``configs/model/<name>.yaml`` with ``model.*`` overrides applied."""
    cfg = compose("model_summary", [f"model={name}", *overrides])
    return to_model_config(cfg.model)
