"""Saved per-frame probabilities and their merge over runs (multi-scale / flip / model ensembles).

With ``save_scores=true`` a run writes ``Scores/<video>/<frame>.npz`` for every written frame:
``probabilities`` (K+1, H, W) uint8 (x255, at output resolution; channel 0 = background) and
``object_ids`` (K,), the object id of each channel. Runs are merged per object id, never per
channel position, so runs whose channels are ordered differently (or that found different objects)
still combine correctly: the merged score of an object is the sum over runs of its probability
(0 in a run without it), and the pixel takes the id with the largest sum.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from s3.eval.submission import write_prediction

SCORES_DIR = "Scores"


def save_frame_scores(path: Path, probabilities: np.ndarray, object_ids: list[int]) -> None:
    """probabilities (K+1, H, W) in [0, 1] with channel i+1 = ``object_ids[i]``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    scores = np.round(np.clip(probabilities.astype(np.float32), 0, 1) * 255).astype(np.uint8)
    np.savez_compressed(path, probabilities=scores, object_ids=np.asarray(object_ids, np.int64))


def load_frame_scores(path: Path) -> tuple[np.ndarray, list[int]]:
    """(K+1, H, W) uint8 and the K object ids of one saved frame."""
    with np.load(path) as data:
        return data["probabilities"], [int(i) for i in data["object_ids"]]


def merge_frame(scores: list[tuple[np.ndarray, list[int]]]) -> np.ndarray:
    """Merge one frame's scores of several runs -> (H, W) int64 object ids."""
    ids = sorted({obj for _, objects in scores for obj in objects})
    shape = scores[0][0].shape[1:]
    total = np.zeros((len(ids) + 1, *shape), np.float32)
    for probabilities, objects in scores:
        if probabilities.shape[1:] != shape:
            raise ValueError(f"merge_frame: score maps of sizes {shape} and {probabilities.shape[1:]} differ")
        total[0] += probabilities[0]
        for channel, obj in enumerate(objects, start=1):
            total[ids.index(obj) + 1] += probabilities[channel]
    lookup = np.asarray([0, *ids], np.int64)
    return lookup[total.argmax(axis=0)]


def merge_runs(run_dirs: list[Path], out_dir: Path) -> list[str]:
    """Merge the saved scores of ``run_dirs`` into ``out_dir/<video>/<frame>.png``; returns the videos.

    Every run must hold the same videos and frames (the first run's listing is the reference)."""
    if not run_dirs:
        raise ValueError("merge_runs: no run folders given")
    reference = run_dirs[0] / SCORES_DIR
    if not reference.is_dir():
        raise ValueError(f"{reference}: no saved scores (run the evaluation with save_scores=true)")
    videos = sorted(p.name for p in reference.iterdir() if p.is_dir())
    for video in videos:
        for frame in sorted((reference / video).glob("*.npz")):
            paths = [run / SCORES_DIR / video / frame.name for run in run_dirs]
            missing = [str(p) for p in paths if not p.is_file()]
            if missing:
                raise ValueError(f"{missing[0]}: missing in this run (runs must cover the same frames)")
            id_mask = merge_frame([load_frame_scores(p) for p in paths])
            write_prediction(out_dir / video / f"{frame.stem}.png", id_mask)
    return videos
