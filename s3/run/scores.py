"""Scoring jobs: J&F of any prediction folder against DAVIS ground truth, with its HTML report
(``scripts/score.py``); the page comparing several scored runs (``scripts/compare.py``); and the
merge of several evaluation runs' saved probabilities (``scripts/merge_scores.py``)."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from s3.config.jobs import CompareConfig, MergeScoresConfig, job_config
from s3.config.score import ScoreConfig
from s3.eval import ScoreTable, score_davis, write_comparison, write_report
from s3.eval.ensemble import merge_runs
from s3.eval.submission import make_zip


def score_from_config(node: DictConfig) -> tuple[ScoreTable, Path]:
    """Score ``results`` against ``davis_root``; returns the table and the folder the CSVs went to."""
    cfg: ScoreConfig = job_config(node, ScoreConfig)
    assert cfg.results is not None and cfg.davis_root is not None  # checked by the schema
    out = Path(cfg.out) if cfg.out else Path(cfg.results)
    table = score_davis(
        Path(cfg.davis_root),
        cfg.subset,
        Path(cfg.results),
        out=out,
        workers=cfg.workers,
        mode=cfg.mode,
        ignore_void=cfg.ignore_void,
        progress=cfg.progress,
        per_frame=cfg.report,
    )
    if cfg.report:
        davis = Path(cfg.davis_root)
        frames = davis / "JPEGImages" / "480p"
        write_report(
            out, davis / "Annotations" / "480p", frames if frames.is_dir() else None,
            pred_dir=Path(cfg.results), set_name=cfg.subset,
        )
    return table, out


def compare_from_config(node: DictConfig) -> Path:
    """The comparison page of several scored runs (``scripts/compare.py``); returns its path."""
    cfg: CompareConfig = job_config(node, CompareConfig)
    return write_comparison(
        [Path(r) for r in cfg.runs], Path(cfg.out), names=cfg.names or None, set_name=cfg.set_name,
        disagreeing=cfg.disagreeing,
    )


def merge_scores_from_config(node: DictConfig) -> list[str]:
    """Merge the runs' probabilities into ``output_dir/Annotations`` (and a zip); returns what was written."""
    cfg: MergeScoresConfig = job_config(node, MergeScoresConfig)
    out = Path(cfg.output_dir)
    videos = merge_runs([Path(r) for r in cfg.runs], out / "Annotations")
    lines = [f"merged {len(cfg.runs)} runs: {len(videos)} videos in {out / 'Annotations'}"]
    if cfg.layout != "none":
        lines.append(f"wrote {make_zip(out / 'Annotations', videos, cfg.layout, out / cfg.zip_name)}")
    return lines
