"""Merge the saved probabilities of several evaluation runs (multi-scale, flip or model ensembles).

    python scripts/eval.py dataset=davis17_test weights=<ckpt> save_scores=true exp_id=s480
    python scripts/eval.py dataset=davis17_test weights=<ckpt> save_scores=true plus=true exp_id=s720
    python scripts/merge_scores.py runs=[outputs/s480/davis17_test,outputs/s720/davis17_test] \
        output_dir=outputs/merged layout=sequences_at_root
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from s3.run.cli import run_job
from s3.run.scores import merge_scores_from_config


@hydra.main(config_path="../configs", config_name="merge_scores", version_base="1.3")
def main(cfg: DictConfig) -> None:
    print("\n".join(run_job(lambda: merge_scores_from_config(cfg))))


if __name__ == "__main__":
    main()
