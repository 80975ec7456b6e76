"""Print per-module trainable / frozen parameter counts and output shapes of a model config.

    python scripts/model_summary.py model=s3_vitb
    python scripts/model_summary.py model=cutie_base frame_size=[480,864] num_objects=2
    python scripts/model_summary.py model=s3_vitb model.query.read=cutie
"""

from __future__ import annotations

import hydra
import torch
from omegaconf import DictConfig

from s3.config import register_configs, to_model_config
from s3.model.build import build_network
from s3.model.summary import summarize

register_configs()


@hydra.main(config_path="../configs", config_name="model_summary", version_base="1.3")
def main(cfg: DictConfig) -> None:
    model_cfg = to_model_config(cfg.model)
    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    torch.manual_seed(int(cfg.seed))
    network = build_network(model_cfg)
    summary = summarize(network, tuple(cfg.frame_size), int(cfg.num_objects), seed=int(cfg.seed))
    print(f"model={model_cfg.name}")
    print(summary.format())


if __name__ == "__main__":
    main()
