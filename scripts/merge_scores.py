"""Merge the saved probabilities of several evaluation runs (multi-scale, flip or model ensembles).

    python scripts/eval.py dataset=davis17_test weights=<ckpt> save_scores=true exp_id=s480
    python scripts/eval.py dataset=davis17_test weights=<ckpt> save_scores=true plus=true exp_id=s720
    python scripts/merge_scores.py runs=[outputs/s480/davis17_test,outputs/s720/davis17_test] \
        output_dir=outputs/merged layout=sequences_at_root
"""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig

from s3.eval.ensemble import merge_runs
from s3.eval.submission import ZIP_ROOTS, make_zip


@hydra.main(config_path="../configs", config_name="merge_scores", version_base="1.3")
def main(cfg: DictConfig) -> None:
    if cfg.layout != "none" and cfg.layout not in ZIP_ROOTS:
        raise SystemExit(f"layout={cfg.layout!r} is not one of {['none', *ZIP_ROOTS]}")
    out = Path(cfg.output_dir)
    try:
        videos = merge_runs([Path(r) for r in cfg.runs], out / "Annotations")
    except ValueError as err:
        raise SystemExit(f"error: {err}") from None
    print(f"merged {len(cfg.runs)} runs: {len(videos)} videos in {out / 'Annotations'}")
    if cfg.layout != "none":
        print(f"wrote {make_zip(out / 'Annotations', videos, cfg.layout, out / cfg.zip_name)}")


if __name__ == "__main__":
    main()
