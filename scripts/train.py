"""Train S3 (or a baseline) with the stages of a recipe; see configs/train.yaml for every key.

    python scripts/train.py data=davis_ytvos                      # the paper's recipe, one process
    torchrun --nproc_per_node=8 scripts/train.py data=mega        # DDP; train.stages.*.batch_size is global
    python scripts/train.py recipe=reference                      # the authors' code's values
    python scripts/train.py recipe=cutie                          # cutie_base: static pre-training, then video
    python scripts/train.py train.exp_id=NAME train.resume=auto   # continue an interrupted run
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from s3.config import register_configs
from s3.run.cli import run_job
from s3.run.train import train_from_config

register_configs()


@hydra.main(config_path="../configs", config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> None:
    run_job(lambda: train_from_config(cfg))


if __name__ == "__main__":
    main()
