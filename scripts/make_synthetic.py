"""Write a synthetic VOS dataset in the DAVIS or YouTube-VOS layout.

    python scripts/make_synthetic.py root=data/synthetic
    python scripts/make_synthetic.py root=data/synthetic_yt layout=ytvos num_videos.train=200 seed=1
    python scripts/make_synthetic.py root=data/synthetic frame_size=[480,854] overwrite=true
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from s3.run.cli import run_job
from s3.run.datasets import make_synthetic_from_config


@hydra.main(config_path="../configs", config_name="make_synthetic", version_base="1.3")
def main(cfg: DictConfig) -> None:
    print(run_job(lambda: make_synthetic_from_config(cfg)))


if __name__ == "__main__":
    main()
