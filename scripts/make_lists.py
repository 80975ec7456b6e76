"""Regenerate the video lists and empty-frame lists of a data mix from local dataset folders.

    python scripts/make_lists.py data=davis_ytvos
    python scripts/make_lists.py data=mega names=[mose,burst] output_dir=s3/data/lists
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from s3.config import register_configs
from s3.run.cli import run_job
from s3.run.datasets import make_lists_from_config

register_configs()


@hydra.main(config_path="../configs", config_name="make_lists", version_base="1.3")
def main(cfg: DictConfig) -> None:
    print("\n".join(run_job(lambda: make_lists_from_config(cfg))))


if __name__ == "__main__":
    main()
