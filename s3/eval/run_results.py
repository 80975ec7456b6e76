"""A scored run folder read back for the HTML pages (``s3.eval.report``, ``s3.eval.compare``).

The folder holds the CSVs that :func:`s3.eval.scoring.write_csvs` writes (``global_results-<set>.csv``,
``per-sequence_results-<set>.csv``, ``per-frame_results-<set>.csv``) and, when the evaluation job wrote
it, ``run_settings.json`` and ``run_summary.json``. Every problem raises a one-line :class:`RunResultsError` that
starts with the offending path.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Optional

import numpy as np

from s3.eval.scoring import GLOBAL_COLUMNS, PER_FRAME_COLUMNS, PER_FRAME_CSV, PER_SEQUENCE_COLUMNS, ObjectScores

SETTINGS_FILE = "run_settings.json"
SUMMARY_FILE = "run_summary.json"
PER_FRAME_PREFIX, PER_FRAME_SUFFIX = PER_FRAME_CSV.split("{}")


class RunResultsError(ValueError):
    """A scored run folder is missing, incomplete or inconsistent (the message starts with the path)."""


@dataclass(frozen=True)
class RunResults:
    """The scores of one run: the official numbers as written, the per-frame curves, the run's settings."""

    folder: Path
    set_name: str
    global_metrics: dict[str, float]  # the global CSV, keyed by GLOBAL_COLUMNS, in [0, 1]
    objects: list[ObjectScores]  # the per-frame CSV, in its order (sequence, then object)
    object_means: dict[str, tuple[float, float]]  # the per-sequence CSV: "<sequence>_<id>" -> (J-Mean, F-Mean)
    settings: dict[str, Any]  # run_settings.json, {} when absent
    summary: dict[str, Any]  # run_summary.json, {} when absent

    @cached_property
    def _objects_by_sequence(self) -> dict[str, list[ObjectScores]]:
        grouped: dict[str, list[ObjectScores]] = {}
        for scores in self.objects:
            grouped.setdefault(scores.sequence, []).append(scores)
        return grouped

    @property
    def sequences(self) -> list[str]:
        """The sequence names in the CSV order."""
        return list(self._objects_by_sequence)

    def objects_of(self, sequence: str) -> list[ObjectScores]:
        """The objects of one sequence, in id order."""
        return self._objects_by_sequence[sequence]

    def means(self, scores: ObjectScores) -> tuple[float, float]:
        """(J-Mean, F-Mean) of one object as the per-sequence CSV states them."""
        return self.object_means[scores.name]

    def sequence_means(self, sequence: str) -> tuple[float, float, float]:
        """(J&F, J, F) of one sequence: the means over its objects of the per-sequence CSV values."""
        pairs = [self.means(o) for o in self.objects_of(sequence)]
        j = float(np.mean([p[0] for p in pairs]))
        f = float(np.mean([p[1] for p in pairs]))
        return (j + f) / 2, j, f


def flatten_settings(settings: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested settings as ``{"protocol.size": 480, ...}`` (lists and scalars are leaves)."""
    flat: dict[str, Any] = {}
    for key, value in settings.items():
        if isinstance(value, dict):
            flat.update(flatten_settings(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def find_set_name(folder: Path) -> str:
    """The set name of the only ``per-frame_results-<set>.csv`` in ``folder``."""
    found = sorted(
        path.name.removeprefix(PER_FRAME_PREFIX).removesuffix(PER_FRAME_SUFFIX)
        for path in folder.glob(PER_FRAME_CSV.format("*"))
    )
    if not found:
        raise RunResultsError(
            f"{folder}: no {PER_FRAME_CSV.format('<set>')} here (score the predictions again with this version "
            "of s3.eval, which writes it next to the two official CSVs)"
        )
    if len(found) > 1:
        raise RunResultsError(f"{folder}: per-frame CSVs of several sets ({', '.join(found)}); name the one to use")
    return found[0]


def _read_rows(path: Path, columns: tuple[str, ...]) -> list[list[str]]:
    """The data rows of a CSV whose header must be ``columns``."""
    if not path.is_file():
        raise RunResultsError(f"{path}: file not found")
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    if not rows or tuple(rows[0]) != columns:
        raise RunResultsError(f"{path}: the header is not {','.join(columns)}")
    for number, row in enumerate(rows[1:], start=2):
        if len(row) != len(columns):
            raise RunResultsError(f"{path}: line {number} has {len(row)} fields, expected {len(columns)}")
    return rows[1:]


def _number(path: Path, text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise RunResultsError(f"{path}: {text!r} is not a number") from None


def _read_per_frame(path: Path) -> list[ObjectScores]:
    """The per-frame CSV as one :class:`ObjectScores` per (sequence, object), in file order."""
    grouped: dict[tuple[str, int], tuple[list[float], list[float], list[str]]] = {}
    for sequence, object_id, frame, j, f in _read_rows(path, PER_FRAME_COLUMNS):
        if not object_id.isdigit():
            raise RunResultsError(f"{path}: object id {object_id!r} of sequence {sequence} is not a whole number")
        j_values, f_values, frames = grouped.setdefault((sequence, int(object_id)), ([], [], []))
        j_values.append(_number(path, j))
        f_values.append(_number(path, f))
        frames.append(frame)
    if not grouped:
        raise RunResultsError(f"{path}: no scored frames")
    return [
        ObjectScores(sequence, object_id, np.array(j_values), np.array(f_values), tuple(frames))
        for (sequence, object_id), (j_values, f_values, frames) in grouped.items()
    ]


def _read_json(path: Path) -> dict[str, Any]:
    """A JSON object file, or {} when the file does not exist."""
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise RunResultsError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(data, dict):
        raise RunResultsError(f"{path}: expected a JSON object")
    return data


def load_run_results(folder: Path, set_name: Optional[str] = None) -> RunResults:
    """Read the score CSVs of ``set_name`` (default: the only set with a per-frame CSV) and the run's JSON files."""
    folder = Path(folder)
    if not folder.is_dir():
        raise RunResultsError(f"{folder}: folder not found")
    set_name = set_name or find_set_name(folder)
    global_path = folder / f"global_results-{set_name}.csv"
    global_rows = _read_rows(global_path, GLOBAL_COLUMNS)
    if len(global_rows) != 1:
        raise RunResultsError(f"{global_path}: expected one row of values, found {len(global_rows)}")
    global_metrics = {name: _number(global_path, value) for name, value in zip(GLOBAL_COLUMNS, global_rows[0])}
    per_sequence_path = folder / f"per-sequence_results-{set_name}.csv"
    object_means = {
        name: (_number(per_sequence_path, j), _number(per_sequence_path, f))
        for name, j, f in _read_rows(per_sequence_path, PER_SEQUENCE_COLUMNS)
    }
    per_frame_path = folder / PER_FRAME_CSV.format(set_name)
    objects = _read_per_frame(per_frame_path)
    if [o.name for o in objects] != list(object_means):
        raise RunResultsError(
            f"{per_frame_path}: its objects differ from those of {per_sequence_path.name} "
            "(a stale file? score the run again)"
        )
    return RunResults(
        folder=folder,
        set_name=set_name,
        global_metrics=global_metrics,
        objects=objects,
        object_means=object_means,
        settings=_read_json(folder / SETTINGS_FILE),
        summary=_read_json(folder / SUMMARY_FILE),
    )
