"""Writing predictions: palette PNGs at the original resolution, the benchmark servers' zip layouts
and BURST's predictions JSON.

Zip layouts (``dataset.submission``):

- ``sequences_at_root`` (DAVIS 2017 test-dev, MOSE): ``<video>/<frame>.png`` at the archive root;
- ``annotations_at_root`` (YouTube-VOS, LVOS test): ``Annotations/<video>/<frame>.png``;
- ``burst_json``: no zip; ``predictions.json`` = the input JSON with every sequence's
  ``segmentations`` replaced by the predictions on its annotated frames.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from s3.data.palette import write_mask
from s3.data.rle import rle_encode
from s3.eval.datasets import BURST_SEPARATOR

ZIP_ROOTS = {"sequences_at_root": "", "annotations_at_root": "Annotations/"}


def write_prediction(path: Path, id_mask: np.ndarray) -> None:
    """An (H, W) map of object ids (0..255) as an indexed PNG with the DAVIS palette."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_mask(path, id_mask)


def make_zip(annotation_dir: Path, videos: list[str], layout: str, zip_path: Path) -> Path:
    """Archive ``annotation_dir/<video>/*.png`` of ``videos`` in a server's layout (see the module docstring)."""
    if layout not in ZIP_ROOTS:
        raise ValueError(f"make_zip: layout {layout!r} is not one of {sorted(ZIP_ROOTS)}")
    prefix = ZIP_ROOTS[layout]
    zip_path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for video in videos:
            files = sorted((annotation_dir / video).glob("*.png"))
            if not files:
                raise ValueError(f"{annotation_dir / video}: no predictions to archive")
            for file in files:
                archive.write(file, f"{prefix}{video}/{file.name}")
    return zip_path


def burst_segmentations(id_masks: dict[str, np.ndarray], annotated_paths: list[str]) -> list[dict[str, Any]]:
    """Predictions of one sequence in BURST's schema: one ``{track_id: {"rle": counts}}`` per annotated
    frame (in ``annotated_paths`` order); id_masks: frame name -> (H, W) int track-id map."""
    segmentations = []
    for path in annotated_paths:
        id_mask = id_masks.get(Path(path).stem)
        if id_mask is None:
            raise ValueError(f"burst_segmentations: no prediction for annotated frame {path}")
        tracks = [int(t) for t in np.unique(id_mask) if t != 0]
        segmentations.append({str(t): {"rle": rle_encode(id_mask == t)["counts"]} for t in tracks})
    return segmentations


def write_burst_predictions(template_json: Path, per_video: dict[str, list[dict[str, Any]]], out_path: Path) -> Path:
    """``predictions.json``: ``template_json`` (the input annotations) with each sequence's
    ``segmentations`` replaced by ``per_video[<dataset>_-_<seq_name>]``; sequences without an
    annotated object keep no predictions."""
    data = json.loads(template_json.read_text())
    for seq in data["sequences"]:
        name = f"{seq['dataset']}{BURST_SEPARATOR}{seq['seq_name']}"
        seq["segmentations"] = per_video.get(name, [{} for _ in seq["annotated_image_paths"]])
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(data))
    return out_path
