"""Segment a video of your own from its masks: palette PNGs at the video's size and an overlay mp4.

    python scripts/segment.py video=clip.mp4 masks=first.png out=clip_masks weights=<checkpoint>
    python scripts/segment.py video=<frame folder> masks=<mask folder> out=<folder> model=cutie_base weights=<ckpt>
    python scripts/segment.py video=clip.mp4 masks=<mask folder> out=<folder> start=40 reverse=true save_overlays=true

Masks: one PNG (the start frame's) or a folder of <frame name>.png; frames of a video file are
named by index, 7 digits (0000040.png; 40.png works too). See s3/run/segment.py.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from s3.config import register_configs
from s3.run.cli import run_job
from s3.run.segment import segment_from_config

register_configs()


@hydra.main(config_path="../configs", config_name="segment", version_base="1.3")
def main(cfg: DictConfig) -> None:
    print(run_job(lambda: segment_from_config(cfg)).format())


if __name__ == "__main__":
    main()
