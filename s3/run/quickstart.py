"""The zero-download quickstart job behind ``scripts/quickstart.py``.

1. Generate the synthetic DAVIS-layout videos (``s3.data.synthetic``) unless they are there.
2. Train the tiny model (``model``: ``s3_tiny`` by default, or ``stma_tiny``) on their train split
   with its quickstart recipe (``recipes``: ``quickstart``, ``stma_quickstart``) (``s3.train``).
3. Evaluate the trained weights on the held-out val split with the ``synthetic`` preset
   (``s3.run.evaluate``): palette PNGs, a zip, overlays and mp4s, J&F.
4. Score the trivial baseline that copies the first-frame mask to every frame with the same scorer.

Every step is resumable: an existing dataset is reused, training continues from its latest
checkpoint, and evaluation skips finished videos.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from s3.config import compose
from s3.config.jobs import QuickstartConfig, job_config
from s3.data.frames import list_frames
from s3.data.palette import read_mask
from s3.data.synthetic import generate_dataset, prepare_root
from s3.eval.scoring import evaluate_sequences
from s3.eval.submission import write_prediction
from s3.run.evaluate import RunReport, evaluate_from_config
from s3.run.train import train_from_config
from s3.train.checkpoint import weights_path

logger = logging.getLogger(__name__)


@dataclass
class QuickstartReport:
    model: str  # the model config trained
    model_jf: float  # J&F-Mean of the trained model on the val videos, in [0, 1]
    baseline_jf: float  # J&F-Mean of copying the first-frame mask
    evaluation: RunReport
    train_seconds: float
    eval_seconds: float
    weights: Path

    def format(self) -> str:
        return "\n".join(
            [
                self.evaluation.format(),
                "",
                f"trained weights: {self.weights}",
                f"training {self.train_seconds / 60:.1f} min, evaluation {self.eval_seconds / 60:.1f} min",
                f"J&F on the synthetic val videos: {self.model} {100 * self.model_jf:.1f}  |  "
                f"copy-first-frame baseline {100 * self.baseline_jf:.1f}",
            ]
        )


def _dataset(cfg: QuickstartConfig) -> Path:
    root = Path(cfg.data_root) / "synthetic"
    if prepare_root(root, cfg.synthetic):
        logger.info("generating the synthetic videos in %s", root)
        generate_dataset(root, cfg.synthetic)
    else:
        logger.info("using the synthetic videos in %s", root)
    return root


def _train(cfg: QuickstartConfig, model_overrides: Sequence[str], run_dir: Path) -> Path:
    overrides = [
        f"model={cfg.model}",
        *model_overrides,
        "data=synthetic",
        f"recipe={cfg.recipe}",
        f"data.root={cfg.data_root}",
        f"train.run_dir={run_dir}",
        f"train.threads={cfg.threads}",
        f"train.resume={'auto' if cfg.resume else 'none'}",
    ]
    if cfg.iterations is not None:
        overrides.append(f"train.stages.0.num_iterations={cfg.iterations}")
    train_from_config(compose("train", overrides))
    return weights_path(run_dir, "main")


def _evaluate(
    cfg: QuickstartConfig, model_overrides: Sequence[str], data_root: Path, weights: Path, out: Path
) -> RunReport:
    composed = compose(
        "eval",
        [
            f"model={cfg.model}",
            *model_overrides,
            "dataset=synthetic",
            f"dataset.root={data_root}",
            "dataset.submission=sequences_at_root",
            f"weights={weights}",
            f"output_dir={out}",
            "exp_id=quickstart",
            f"visualize={str(cfg.visualize).lower()}",
            f"resume={str(cfg.resume).lower()}",
            f"threads={cfg.threads}",
        ],
    )
    report, _ = evaluate_from_config(composed)
    return report


def copy_first_frame_baseline(image_dir: Path, mask_dir: Path, videos: list[str], out: Path) -> None:
    """Write, for every frame of every video, the first frame's ground-truth mask as the prediction."""
    for video in videos:
        first = read_mask(sorted((mask_dir / video).glob("*.png"))[0])
        for frame in list_frames(image_dir / video):
            write_prediction(out / video / f"{frame.stem}.png", first)


def run_quickstart(cfg: QuickstartConfig, model_overrides: Sequence[str] = ()) -> QuickstartReport:
    """The whole job; ``model_overrides`` (``model.*`` overrides) reach training and evaluation alike."""
    out = Path(cfg.output_dir)
    data_root = _dataset(cfg)

    start = time.perf_counter()
    weights = _train(cfg, model_overrides, out / "train")
    train_seconds = time.perf_counter() - start

    start = time.perf_counter()
    evaluation = _evaluate(cfg, model_overrides, data_root, weights, out / "eval")
    eval_seconds = time.perf_counter() - start
    if evaluation.global_metrics is None:
        raise RuntimeError(f"the evaluation produced no scores ({'; '.join(evaluation.notes)})")

    videos = (data_root / "ImageSets/2017/val.txt").read_text().split()
    image_dir, mask_dir = data_root / "JPEGImages/480p", data_root / "Annotations/480p"
    copy_first_frame_baseline(image_dir, mask_dir, videos, out / "baseline")
    baseline = evaluate_sequences(mask_dir, out / "baseline", videos, mode="davis", progress=False)
    return QuickstartReport(
        model=cfg.model,
        model_jf=evaluation.global_metrics["J&F-Mean"],
        baseline_jf=baseline.global_metrics()["J&F-Mean"],
        evaluation=evaluation,
        train_seconds=train_seconds,
        eval_seconds=eval_seconds,
        weights=weights,
    )


def is_model_override(override: str) -> bool:
    """Whether a command-line override changes the model config (``model.key=...``, ``model/group=...``)."""
    return override.lstrip("+~").startswith(("model.", "model/"))


def quickstart_from_args(argv: list[str]) -> QuickstartReport:
    """The job on command-line overrides of ``configs/quickstart.yaml`` (with INFO logging on stderr):
    ``model=<name>`` picks the model and its recipe, ``model.*`` overrides go to training and evaluation."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    composed = compose("quickstart", argv)
    cfg = job_config(composed, QuickstartConfig, leave_out=("model",))
    cfg = dataclasses.replace(cfg, model=composed.model.name)
    return run_quickstart(cfg, [a for a in argv if is_model_override(a)])
