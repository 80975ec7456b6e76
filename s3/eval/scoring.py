"""J&F of predicted masks against a ground-truth folder: per sequence, in parallel, to CSV.

Both folders hold ``<sequence>/<frame>.png`` label maps; predictions are looked up by the ground
truth's frame names. Two conventions:

``davis`` (davis2017-evaluation, semi-supervised task)
    Objects are the ids 1..N, N = the largest id of the first ground-truth frame (void 255 aside).
    Every frame but the first and the last is scored, for every object, also where it is absent
    (absent in both masks scores J = F = 1). Void pixels (255) count as background, as in the
    official tool; ``ignore_void=True`` instead removes them from J and F. A predicted id above N
    is an error.
``vos_benchmark`` (hkchengrex/vos-benchmark)
    Any ids, 255 included, no void. The frames with a ground-truth file (sparse annotations are
    fine) are scored, except the first and the last. An id enters the tracked set on the first
    scored frame where it shows in the ground truth or the prediction and is scored from there on;
    ids that never show in a scored ground-truth frame are left out of the results.

Per object, J and F are summarised by Mean, Recall and Decay; the global numbers are the means over
all objects of all sequences (a sequence with more objects weighs more); J&F = (J-Mean + F-Mean) / 2.

Besides the official CSV pair, :func:`write_csvs` writes ``per-frame_results-<set>.csv``: one row per
object per scored frame (``Sequence, Object, Frame, J, F``; frame = the ground-truth file name without
``.png``; scores in [0, 1] with 6 decimals), in sequence order, then object id, then frame order.
"""

from __future__ import annotations

import csv
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import cv2
import numpy as np
from tqdm import tqdm

from s3.config.score import SCORING_MODES
from s3.data.palette import MaskFileError, read_mask
from s3.eval.masks import list_mask_frames, present_ids, split_void
from s3.eval.metrics import FrameStatistics, frame_statistics, object_scores

GLOBAL_COLUMNS = ("J&F-Mean", "J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay")
PER_SEQUENCE_COLUMNS = ("Sequence", "J-Mean", "F-Mean")
PER_FRAME_COLUMNS = ("Sequence", "Object", "Frame", "J", "F")
CSV_FLOAT_FORMAT = "{:.3f}"
PER_FRAME_FLOAT_FORMAT = "{:.6f}"
PER_FRAME_CSV = "per-frame_results-{}.csv"  # .format(set name)


@dataclass(frozen=True)
class ObjectScores:
    """Per-frame J and F of one object of one sequence, over the frames where it is scored.

    ``frames`` names those frames (ground-truth file names without ``.png``), one per entry of ``j`` and ``f``.
    """

    sequence: str
    object_id: int
    j: np.ndarray
    f: np.ndarray
    frames: tuple[str, ...]

    @property
    def name(self) -> str:
        """The row name of the per-sequence CSV: ``<sequence>_<object id>``."""
        return f"{self.sequence}_{self.object_id}"

    @property
    def j_statistics(self) -> FrameStatistics:
        return frame_statistics(self.j)

    @property
    def f_statistics(self) -> FrameStatistics:
        return frame_statistics(self.f)


@dataclass
class ScoreTable:
    """The scored objects of a set of sequences, in sequence order then id order."""

    mode: str
    objects: list[ObjectScores] = field(default_factory=list)

    def global_metrics(self) -> dict[str, float]:
        """The means over all objects, keyed by :data:`GLOBAL_COLUMNS` (values in [0, 1])."""
        if not self.objects:
            raise ValueError("no objects were scored: the ground truth holds no object in the scored frames")
        j = [o.j_statistics for o in self.objects]
        f = [o.f_statistics for o in self.objects]
        j_mean = float(np.mean([s.mean for s in j]))
        f_mean = float(np.mean([s.mean for s in f]))
        return {
            "J&F-Mean": (j_mean + f_mean) / 2,
            "J-Mean": j_mean,
            "J-Recall": float(np.mean([s.recall for s in j])),
            "J-Decay": float(np.mean([s.decay for s in j])),
            "F-Mean": f_mean,
            "F-Recall": float(np.mean([s.recall for s in f])),
            "F-Decay": float(np.mean([s.decay for s in f])),
        }

    def per_object_rows(self) -> list[tuple[str, float, float]]:
        """``(<sequence>_<id>, J-Mean, F-Mean)`` for every object."""
        return [(o.name, o.j_statistics.mean, o.f_statistics.mean) for o in self.objects]

    def format(self) -> str:
        """A readable table: one line per object, then the global metrics (all x100)."""
        rows = self.per_object_rows()
        sequences = len({o.sequence for o in self.objects})
        width = max([len("Object"), *(len(name) for name, _, _ in rows)])
        lines = [
            f"J&F ({self.mode} convention): {len(rows)} objects in {sequences} sequences, scores x100",
            f"{'Object':<{width}}  {'J&F':>6}  {'J':>6}  {'F':>6}",
        ]
        lines += [f"{name:<{width}}  {50 * (j + f):6.1f}  {100 * j:6.1f}  {100 * f:6.1f}" for name, j, f in rows]
        metrics = self.global_metrics()
        lines.append("-" * max(width + 24, 8 * len(GLOBAL_COLUMNS)))
        lines.append("  ".join(f"{name:>8}" for name in GLOBAL_COLUMNS))
        lines.append("  ".join(f"{100 * metrics[name]:8.1f}" for name in GLOBAL_COLUMNS))
        return "\n".join(lines)


def write_csvs(table: ScoreTable, out_dir: Path, set_name: str, per_frame: bool = True) -> tuple[Path, ...]:
    """Write ``global_results-<set>.csv`` and ``per-sequence_results-<set>.csv`` as the official tool does,
    and with ``per_frame`` also ``per-frame_results-<set>.csv`` (see the module docstring).

    Existing files are overwritten (the official tool silently re-uses stale ones). Returns the paths written.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    global_path = out_dir / f"global_results-{set_name}.csv"
    per_sequence_path = out_dir / f"per-sequence_results-{set_name}.csv"
    metrics = table.global_metrics()
    with open(global_path, "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(GLOBAL_COLUMNS)
        writer.writerow([CSV_FLOAT_FORMAT.format(metrics[name]) for name in GLOBAL_COLUMNS])
    with open(per_sequence_path, "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(PER_SEQUENCE_COLUMNS)
        for name, j, f in table.per_object_rows():
            writer.writerow([name, CSV_FLOAT_FORMAT.format(j), CSV_FLOAT_FORMAT.format(f)])
    if not per_frame:
        return global_path, per_sequence_path
    per_frame_path = out_dir / PER_FRAME_CSV.format(set_name)
    with open(per_frame_path, "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(PER_FRAME_COLUMNS)
        for scores in table.objects:
            for frame, j, f in zip(scores.frames, scores.j, scores.f):
                writer.writerow([
                    scores.sequence, scores.object_id, frame,
                    PER_FRAME_FLOAT_FORMAT.format(j), PER_FRAME_FLOAT_FORMAT.format(f),
                ])
    return global_path, per_sequence_path, per_frame_path


def _read_prediction(pred_folder: Path, gt_path: Path, gt_shape: tuple[int, ...]) -> np.ndarray:
    """The predicted label map for one ground-truth frame, checked for presence and size."""
    path = pred_folder / gt_path.name
    if not path.is_file():
        raise MaskFileError(f"{path}: prediction not found for ground-truth frame {gt_path}")
    labels = read_mask(path)
    if labels.shape != gt_shape:
        raise MaskFileError(
            f"{path}: size {labels.shape[1]}x{labels.shape[0]} differs from the ground truth "
            f"{gt_path} ({gt_shape[1]}x{gt_shape[0]})"
        )
    return labels


def _score_davis_sequence(gt_folder: Path, pred_folder: Path, ignore_void: bool) -> list[ObjectScores]:
    """The ``davis`` convention for one sequence (see the module docstring)."""
    gt_frames = list_mask_frames(gt_folder)
    if len(gt_frames) < 3:
        raise MaskFileError(
            f"{gt_folder}: {len(gt_frames)} ground-truth frames; need 3 (the first and last are not scored)"
        )
    first, _ = split_void(read_mask(gt_frames[0]))
    num_objects = int(first.max())
    object_ids = list(range(1, num_objects + 1))
    j_frames, f_frames = [], []
    for gt_path in gt_frames[1:-1]:
        gt, void = split_void(read_mask(gt_path))
        pred = _read_prediction(pred_folder, gt_path, gt.shape)
        if int(pred.max()) > num_objects:
            known = f"ids 1..{num_objects}" if num_objects else "no object"
            raise MaskFileError(
                f"{pred_folder / gt_path.name}: predicted id {int(pred.max())} is not an object of the ground "
                f"truth (its first frame {gt_frames[0].name} has {known})"
            )
        j, f = object_scores(gt, pred, object_ids, void if ignore_void else None)
        j_frames.append(j)
        f_frames.append(f)
    j_table = np.stack(j_frames, axis=1)  # (objects, frames)
    f_table = np.stack(f_frames, axis=1)
    frames = tuple(path.stem for path in gt_frames[1:-1])
    return [
        ObjectScores(gt_folder.name, object_id, j_table[index], f_table[index], frames)
        for index, object_id in enumerate(object_ids)
    ]


def _score_vos_benchmark_sequence(gt_folder: Path, pred_folder: Path) -> list[ObjectScores]:
    """The ``vos_benchmark`` convention for one sequence (see the module docstring)."""
    tracked: dict[int, tuple[list[float], list[float], list[str]]] = {}  # id -> J, F, frame names
    in_ground_truth: set[int] = set()
    for gt_path in list_mask_frames(gt_folder)[1:-1]:
        gt = read_mask(gt_path)
        pred = _read_prediction(pred_folder, gt_path, gt.shape)
        gt_ids = present_ids(gt)
        in_ground_truth.update(gt_ids)
        for object_id in [*gt_ids, *present_ids(pred)]:
            tracked.setdefault(object_id, ([], [], []))
        object_ids = sorted(tracked)
        j, f = object_scores(gt, pred, object_ids)
        for object_id, j_value, f_value in zip(object_ids, j, f):
            j_values, f_values, frames = tracked[object_id]
            j_values.append(j_value)
            f_values.append(f_value)
            frames.append(gt_path.stem)
    scored = []
    for object_id in sorted(in_ground_truth):
        j_values, f_values, frames = tracked[object_id]
        scored.append(ObjectScores(gt_folder.name, object_id, np.array(j_values), np.array(f_values), tuple(frames)))
    return scored


def _score_sequence(gt_folder: Path, pred_folder: Path, mode: str, ignore_void: bool) -> list[ObjectScores]:
    """The scored objects of one sequence: ground truth in ``gt_folder``, predictions in ``pred_folder``."""
    if mode == "davis":
        return _score_davis_sequence(gt_folder, pred_folder, ignore_void)
    return _score_vos_benchmark_sequence(gt_folder, pred_folder)


def _single_threaded_worker() -> None:
    """Process-pool initializer: the workers already run in parallel, so OpenCV stays on one thread."""
    cv2.setNumThreads(1)


def evaluate_sequences(
    gt_dir: Path,
    pred_dir: Path,
    sequences: list[str],
    mode: str = "davis",
    workers: int = 1,
    progress: bool = True,
    ignore_void: bool = False,
) -> ScoreTable:
    """Score ``pred_dir/<seq>/*.png`` against ``gt_dir/<seq>/*.png`` for every sequence.

    ``workers`` processes share the sequences (0 = one per CPU core, 1 = in this process);
    ``ignore_void`` (``davis`` mode only) removes the 255 pixels from J and F.
    """
    gt_dir, pred_dir = Path(gt_dir), Path(pred_dir)
    if mode not in SCORING_MODES:
        raise ValueError(f"mode={mode!r} is not one of {list(SCORING_MODES)}")
    if ignore_void and mode != "davis":
        raise ValueError("ignore_void applies to the davis mode only (vos_benchmark scores 255 as an object)")
    if workers < 0:
        raise ValueError(f"workers={workers} must be >= 0 (0 = one per CPU core)")
    if not sequences:
        raise ValueError("no sequences to score")
    for sequence in sequences:
        for folder in (gt_dir / sequence, pred_dir / sequence):
            if not folder.is_dir():
                raise MaskFileError(f"{folder}: sequence folder not found")
    workers = min(workers or os.cpu_count() or 1, len(sequences))
    results: list[list[ObjectScores]] = [[] for _ in sequences]
    with tqdm(total=len(sequences), desc="scoring", unit="seq", disable=not progress) as bar:
        if workers == 1:
            for index, sequence in enumerate(sequences):
                results[index] = _score_sequence(gt_dir / sequence, pred_dir / sequence, mode, ignore_void)
                bar.update()
        else:
            # "spawn": forking a process that already runs OpenMP/torch threads can deadlock the child.
            spawn = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(workers, mp_context=spawn, initializer=_single_threaded_worker) as pool:
                futures = {
                    pool.submit(_score_sequence, gt_dir / sequence, pred_dir / sequence, mode, ignore_void): index
                    for index, sequence in enumerate(sequences)
                }
                try:
                    for future in as_completed(futures):
                        results[futures[future]] = future.result()
                        bar.update()
                except BaseException:
                    pool.shutdown(cancel_futures=True)  # fail fast: do not score the queued sequences
                    raise
    return ScoreTable(mode, [scores for sequence_scores in results for scores in sequence_scores])


def read_sequence_list(path: Path) -> list[str]:
    """The sequence names of a split file (one per line, blank lines ignored)."""
    if not path.is_file():
        raise MaskFileError(f"{path}: split file not found")
    names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not names:
        raise MaskFileError(f"{path}: split file lists no sequences")
    return names


def score_davis(
    davis_root: Path,
    subset: str,
    results: Path,
    out: Optional[Path] = None,
    workers: int = 1,
    mode: str = "davis",
    ignore_void: bool = False,
    progress: bool = True,
    per_frame: bool = False,
) -> ScoreTable:
    """Score a DAVIS 2017 split as ``evaluation_method.py --task semi-supervised`` does.

    Reads ``<davis_root>/ImageSets/2017/<subset>.txt`` and ``<davis_root>/Annotations/480p/``,
    predictions from ``results/<seq>/``, and writes the two CSVs into ``out`` (default: ``results``),
    exactly the official tool's files; ``per_frame`` adds ``per-frame_results-<subset>.csv`` (the input
    of :func:`s3.eval.report.write_report`).
    """
    davis_root, results = Path(davis_root), Path(results)
    sequences = read_sequence_list(davis_root / "ImageSets" / "2017" / f"{subset}.txt")
    gt_dir = davis_root / "Annotations" / "480p"
    for folder in (gt_dir, results):
        if not folder.is_dir():
            raise MaskFileError(f"{folder}: folder not found")
    table = evaluate_sequences(gt_dir, results, sequences, mode, workers, progress, ignore_void)
    write_csvs(table, Path(out) if out is not None else results, subset, per_frame)
    return table
