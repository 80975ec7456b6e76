"""Compare two or more scored runs on one benchmark in one self-contained HTML page.

    python scripts/compare.py runs=[outputs/s3/davis17,outputs/cutie_read/davis17] names=[s3,cutie_read]
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from s3.run.cli import run_job
from s3.run.scores import compare_from_config


@hydra.main(config_path="../configs", config_name="compare", version_base="1.3")
def main(cfg: DictConfig) -> None:
    print(f"wrote {run_job(lambda: compare_from_config(cfg))}")


if __name__ == "__main__":
    main()
