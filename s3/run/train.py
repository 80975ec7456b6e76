"""The training job behind ``scripts/train.py``: a composed ``train`` config -> the trainer, in the
process runtime (device, threads, torchrun) the config asks for."""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from s3.config import to_model_config
from s3.config.train import to_train_config
from s3.run.architectures import architecture
from s3.run.runtime import process_runtime
from s3.train.trainer import StageReport, Trainer


def train_from_config(cfg: DictConfig) -> list[StageReport]:
    """Run the training described by a composed top-level ``train`` config (model, data, train)."""
    model_cfg = to_model_config(cfg.model)
    train_cfg = to_train_config(cfg.train)
    trainer = Trainer(
        architecture(model_cfg),
        model_cfg,
        train_cfg,
        cfg.data,
        run_config=OmegaConf.to_yaml(cfg, resolve=True),
    )
    with process_runtime(
        train_cfg.device,
        train_cfg.threads,
        deterministic=train_cfg.deterministic,
        cudnn_benchmark=train_cfg.cudnn_benchmark,
        device_key="train.device",
    ) as ctx:
        return trainer.fit(ctx)
