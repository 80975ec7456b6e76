"""Convert a whole S3 checkpoint (e.g. the authors' release) to our layout, checked strictly
against the configured model before anything is written.

    python scripts/convert_checkpoint.py src=s3_official.pth out=checkpoints/s3_vitb.pth
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from s3.config import register_configs
from s3.run.cli import run_job
from s3.run.convert import convert_from_config

register_configs()


@hydra.main(config_path="../configs", config_name="convert_checkpoint", version_base="1.3")
def main(cfg: DictConfig) -> None:
    print(run_job(lambda: convert_from_config(cfg)))


if __name__ == "__main__":
    main()
