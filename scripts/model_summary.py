"""Print per-module trainable / frozen parameter counts and output shapes of a model config.

    python scripts/model_summary.py model=s3_vitb
    python scripts/model_summary.py model=cutie_base frame_size=[480,864] num_objects=2
    python scripts/model_summary.py model=s3_vitb model.query.read=cutie
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from s3.config import register_configs
from s3.run.cli import run_job
from s3.run.model_table import model_table_from_config

register_configs()


@hydra.main(config_path="../configs", config_name="model_summary", version_base="1.3")
def main(cfg: DictConfig) -> None:
    model_cfg, table = run_job(lambda: model_table_from_config(cfg))
    print(f"model={model_cfg.name}")
    print(table.format())


if __name__ == "__main__":
    main()
