"""Write a synthetic VOS dataset in the DAVIS or YouTube-VOS layout.

    python scripts/make_synthetic.py root=data/synthetic
    python scripts/make_synthetic.py root=data/synthetic_yt layout=ytvos num_videos.train=200 seed=1
    python scripts/make_synthetic.py root=data/synthetic frame_size=[480,854] overwrite=true
"""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig

from s3.config import ConfigError
from s3.config.synthetic import to_synthetic_config
from s3.data.synthetic import generate_dataset, prepare_root


@hydra.main(config_path="../configs", config_name="make_synthetic", version_base="1.3")
def main(cfg: DictConfig) -> None:
    root = Path(cfg.root)
    try:
        synthetic_cfg = to_synthetic_config(cfg)
        needed = prepare_root(root, synthetic_cfg, overwrite=bool(cfg.overwrite))
    except (ConfigError, FileExistsError) as err:
        raise SystemExit(f"error: {err}") from None
    if not needed:
        print(f"{root} already holds this synthetic dataset; nothing to do")
        return
    generate_dataset(root, synthetic_cfg)
    print(f"wrote a synthetic {synthetic_cfg.layout} dataset to {root}")


if __name__ == "__main__":
    main()
