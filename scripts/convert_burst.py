"""Convert the BURST training annotations (JSON, COCO RLE) to VOS folders for training.

    python scripts/convert_burst.py
    python scripts/convert_burst.py annotations=/datasets/BURST/train/train.json \
        frames=/datasets/BURST/frames/train output=/datasets/BURST/train-vos
"""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig

from s3.data.burst_to_vos import convert_burst


@hydra.main(config_path="../configs", config_name="convert_burst", version_base="1.3")
def main(cfg: DictConfig) -> None:
    annotations = Path(cfg.annotations)
    if not annotations.is_file():
        raise SystemExit(f"annotations: file not found: {annotations}")
    videos = convert_burst(annotations, Path(cfg.frames), Path(cfg.output))
    print(f"wrote {len(videos)} videos to {cfg.output}")


if __name__ == "__main__":
    main()
