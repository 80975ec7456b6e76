"""Score predicted masks against DAVIS 2017 ground truth: J, F, J&F as davis2017-evaluation computes them.

    python scripts/score.py davis_root=../DAVIS/2017/trainval subset=val results=output/d17-val
    python scripts/score.py davis_root=../DAVIS/2017/trainval results=output/d17-val out=scores workers=8
    python scripts/score.py davis_root=../DAVIS/2017/trainval results=output/d17-val mode=vos_benchmark

Writes ``global_results-<subset>.csv`` and ``per-sequence_results-<subset>.csv`` into ``out`` (default:
the results folder) and prints a readable table.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from s3.run.cli import run_job
from s3.run.scores import score_from_config


@hydra.main(config_path="../configs", config_name="score", version_base="1.3")
def main(cfg: DictConfig) -> None:
    table, out = run_job(lambda: score_from_config(cfg))
    print(table.format())
    print(f"CSVs written to {out}/")


if __name__ == "__main__":
    main()
