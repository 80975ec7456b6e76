"""Score predicted masks against DAVIS 2017 ground truth: J, F, J&F as davis2017-evaluation computes them.

    python scripts/score.py davis_root=../DAVIS/2017/trainval subset=val results=output/d17-val
    python scripts/score.py davis_root=../DAVIS/2017/trainval results=output/d17-val out=scores workers=8
    python scripts/score.py davis_root=../DAVIS/2017/trainval results=output/d17-val mode=vos_benchmark

Writes ``global_results-<subset>.csv`` and ``per-sequence_results-<subset>.csv`` into ``out`` (default:
the results folder) and prints a readable table.
"""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig

from s3.config import ConfigError, to_dataclass
from s3.config.score import ScoreConfig
from s3.eval import MaskFileError, score_davis


@hydra.main(config_path="../configs", config_name="score", version_base="1.3")
def main(cfg: DictConfig) -> None:
    try:
        score_cfg = to_dataclass(cfg, ScoreConfig, "score")
        out = Path(score_cfg.out) if score_cfg.out else Path(score_cfg.results)
        table = score_davis(
            Path(score_cfg.davis_root),
            score_cfg.subset,
            Path(score_cfg.results),
            out=out,
            workers=score_cfg.workers,
            mode=score_cfg.mode,
            ignore_void=score_cfg.ignore_void,
            progress=score_cfg.progress,
        )
    except (ConfigError, MaskFileError) as err:
        raise SystemExit(f"error: {err}") from None
    print(table.format())
    print(f"CSVs written to {out}/")


if __name__ == "__main__":
    main()
