"""Convert the BURST training annotations (JSON, COCO RLE) to VOS folders for training.

    python scripts/convert_burst.py
    python scripts/convert_burst.py annotations=/datasets/BURST/train/train.json \
        frames=/datasets/BURST/frames/train output=/datasets/BURST/train-vos
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from s3.run.cli import run_job
from s3.run.datasets import convert_burst_from_config


@hydra.main(config_path="../configs", config_name="convert_burst", version_base="1.3")
def main(cfg: DictConfig) -> None:
    print(run_job(lambda: convert_burst_from_config(cfg)))


if __name__ == "__main__":
    main()
