"""Evaluate a model on a benchmark preset: predictions, submission archive, FPS and local scores.

    python scripts/eval.py dataset=davis17 weights=<checkpoint>
    python scripts/eval.py dataset=ytvos19 weights=<checkpoint> plus=true exp_id=s3_plus
    python scripts/eval.py dataset=generic dataset.image_dir=<frames> dataset.mask_dir=<masks> weights=<ckpt>
    torchrun --nproc_per_node=4 scripts/eval.py dataset=mose weights=<checkpoint>
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from s3.config import register_configs
from s3.run.cli import run_job
from s3.run.evaluate import evaluate_from_config

register_configs()


@hydra.main(config_path="../configs", config_name="eval", version_base="1.3")
def main(cfg: DictConfig) -> None:
    report, prints = run_job(lambda: evaluate_from_config(cfg))
    if prints:
        print(report.format())


if __name__ == "__main__":
    main()
