"""The comparison page of several runs (``s3.eval.compare``): global metrics, per-sequence deltas and
their order, the most disagreeing sequences, and the refusals; checked against the runs' CSVs.

Three runs of the same tiny DAVIS-layout set (see test_report.py), whose predictions drift differently
(RUNS): each run fails on other objects and frames.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest
from tiny_datasets import Element, make_davis, parse_page, table_rows, write_drifting_predictions

from s3.eval import GLOBAL_COLUMNS, evaluate_sequences, score_davis, write_comparison, write_csvs
from s3.eval.compare import RUN_COLOURS
from s3.eval.run_results import RunResultsError

VIDEOS = {"alpha": 6, "beta": 7, "gamma": 8, "delta": 5}
RUNS = {
    "base": {"alpha": {1: 1}, "gamma": {1: 2, 2: 3}},
    "ablation": {"beta": {2: 1}, "gamma": {2: 1}, "delta": {1: 2}},
    "third": {"alpha": {1: 3, 2: 1}},
}


@pytest.fixture
def davis_root(tmp_path: Path) -> Path:
    root = tmp_path / "DAVIS"
    make_davis(root, VIDEOS)
    return root


@pytest.fixture
def runs(davis_root: Path, tmp_path: Path) -> dict[str, Path]:
    """Run name -> its scored results folder (the three CSVs of set "val")."""
    folders = {}
    for name, drift in RUNS.items():
        folders[name] = tmp_path / "runs" / name
        write_drifting_predictions(davis_root / "Annotations" / "480p", folders[name], drift)
        score_davis(davis_root, "val", folders[name], progress=False, per_frame=True)
    return folders


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def sequence_jf(folder: Path) -> dict[str, float]:
    """Per sequence, the mean over its objects of (J-Mean + F-Mean) / 2 of the per-sequence CSV."""
    scores: dict[str, list[float]] = {}
    for row in read_csv(folder / "per-sequence_results-val.csv"):
        sequence = row["Sequence"].rsplit("_", 1)[0]
        scores.setdefault(sequence, []).append((float(row["J-Mean"]) + float(row["F-Mean"])) / 2)
    return {sequence: float(np.mean(values)) for sequence, values in scores.items()}


def frame_jf(folder: Path) -> dict[tuple[str, str, str], float]:
    """(sequence, object, frame) -> per-frame J&F of the per-frame CSV."""
    return {
        (r["Sequence"], r["Object"], r["Frame"]): (float(r["J"]) + float(r["F"])) / 2
        for r in read_csv(folder / "per-frame_results-val.csv")
    }


def number(cell: Element) -> float:
    return float(cell.attrs["data-v"])


def test_two_runs_side_by_side(runs: dict[str, Path], tmp_path: Path) -> None:
    base, ablation = runs["base"], runs["ablation"]
    out = write_comparison([base, ablation], tmp_path / "pages" / "compare.html")
    text = out.read_text(encoding="utf-8")
    page = parse_page(text)
    assert "http://" not in text and "https://" not in text and page.find_all("img") == []
    assert page.find("h1").text == "Comparison: base vs ablation"

    # global metrics: one row per run as its CSV says, then the delta row
    _, rows = table_rows(page, "global")
    assert [row[0].attrs["data-v"] for row in rows] == ["base", "ablation", "ablation − base"]
    first, second = (read_csv(folder / "global_results-val.csv")[0] for folder in (base, ablation))
    for index, name in enumerate(GLOBAL_COLUMNS, start=1):
        assert (number(rows[0][index]), number(rows[1][index])) == (float(first[name]), float(second[name]))
        delta = float(second[name]) - float(first[name])
        assert number(rows[2][index]) == pytest.approx(delta)
        assert rows[2][index].text == f"{100 * delta:+.1f}"

    # per-sequence deltas = ablation minus base, largest absolute delta first
    first_jf, second_jf = sequence_jf(base), sequence_jf(ablation)
    headers, rows = table_rows(page, "deltas")
    assert [h.text for h in headers] == ["Sequence", "J&F base", "J&F ablation", "Δ ablation", "largest |Δ|"]
    assert headers[-1].attrs["aria-sort"] == "descending"
    assert page.find("table", id="deltas").attrs["class"] == "sortable"
    assert [row[0].attrs["data-v"] for row in rows] == sorted(
        VIDEOS, key=lambda s: (-abs(second_jf[s] - first_jf[s]), list(VIDEOS).index(s))
    )
    for sequence, jf_base, jf_ablation, delta, largest in rows:
        name = sequence.attrs["data-v"]
        assert (number(jf_base), number(jf_ablation)) == pytest.approx((first_jf[name], second_jf[name]))
        assert number(delta) == pytest.approx(second_jf[name] - first_jf[name])
        assert number(largest) == pytest.approx(abs(second_jf[name] - first_jf[name]))
    assert len({round(abs(second_jf[s] - first_jf[s]), 6) for s in VIDEOS}) == len(VIDEOS)  # the order is decided

    # the most disagreeing sequences: mean |per-frame J&F difference|, largest first, curves of both runs
    first_frames, second_frames = frame_jf(base), frame_jf(ablation)
    spread = {
        sequence: np.mean([abs(second_frames[k] - value) for k, value in first_frames.items() if k[0] == sequence])
        for sequence in VIDEOS
    }
    blocks = page.find("section", id="disagreement").find_all("details", class_="sequence")
    expected = [s for s in sorted(VIDEOS, key=lambda s: -spread[s]) if spread[s] > 0]
    assert [b.attrs["data-sequence"] for b in blocks] == expected
    for block in blocks:
        sequence = block.attrs["data-sequence"]
        assert float(block.attrs["data-disagreement"]) == pytest.approx(spread[sequence])
        plots = block.find_all("svg")
        assert len(plots) == 2  # one per object
        for plot, object_id in zip(plots, ("1", "2")):
            lines = plot.find_all("polyline")
            assert [line.attrs["stroke"] for line in lines] == list(RUN_COLOURS[:2])
            titles = [f"base, object {object_id}", f"ablation, object {object_id}"]
            assert [line.find("title").text for line in lines] == titles
            assert all(len(line.attrs["points"].split()) == VIDEOS[sequence] - 2 for line in lines)
        link = next(row[0] for row in rows if row[0].attrs["data-v"] == sequence).find("a")
        assert link.attrs["href"] == f"#{block.attrs['id']}"


def test_three_runs_with_names_and_settings(runs: dict[str, Path], tmp_path: Path) -> None:
    for name, size in (("base", 480), ("ablation", 600)):
        settings = {"dataset": "davis17", "model": "s3_tiny", "protocol": {"size": size, "mem_every": 5}}
        (runs[name] / "run_settings.json").write_text(json.dumps(settings))
    out = write_comparison(list(runs.values()), tmp_path / "c.html", names=["A", "B", "C"], disagreeing=2)
    page = parse_page(out.read_text(encoding="utf-8"))
    jf = {name: sequence_jf(folder) for name, folder in runs.items()}

    headers, rows = table_rows(page, "deltas")
    assert [h.text for h in headers] == ["Sequence", "J&F A", "J&F B", "J&F C", "Δ B", "Δ C", "largest |Δ|"]
    largest = {s: max(abs(jf["ablation"][s] - jf["base"][s]), abs(jf["third"][s] - jf["base"][s])) for s in VIDEOS}
    assert [row[0].attrs["data-v"] for row in rows] == sorted(VIDEOS, key=lambda s: -largest[s])
    for row in rows:
        sequence = row[0].attrs["data-v"]
        assert number(row[5]) == pytest.approx(jf["third"][sequence] - jf["base"][sequence])
        assert number(row[6]) == pytest.approx(largest[sequence])

    blocks = page.find("section", id="disagreement").find_all("details", class_="sequence")
    assert len(blocks) == 2
    assert [line.attrs["stroke"] for line in blocks[0].find("svg").find_all("polyline")] == list(RUN_COLOURS[:3])

    _, rows = table_rows(page, "settings")  # only what differs
    differing = {row[0].attrs["data-v"]: [cell.text for cell in row[1:]] for row in rows}
    assert differing == {"dataset": ["davis17", "davis17", ""], "model": ["s3_tiny", "s3_tiny", ""],
                         "protocol.size": ["480", "600", ""], "protocol.mem_every": ["5", "5", ""]}
    headers, rows = table_rows(page, "runs")
    size_row = next(row for row in rows if row[0].text == "size")
    assert [cell.text for cell in size_row[1:]] == ["480", "600", ""]
    assert re.search(r'<tr class="differs"><td data-v="size"', out.read_text(encoding="utf-8"))


def test_identical_runs_agree_everywhere(runs: dict[str, Path], tmp_path: Path) -> None:
    out = write_comparison([runs["base"], runs["base"]], tmp_path / "same.html", names=["one", "two"])
    page = parse_page(out.read_text(encoding="utf-8"))
    assert page.find("section", id="disagreement").find_all("details") == []
    assert "The runs agree on every scored frame." in page.find("section", id="disagreement").text
    _, rows = table_rows(page, "deltas")
    assert all(number(row[-1]) == 0 for row in rows)


def test_refusals_name_the_folders(runs: dict[str, Path], davis_root: Path, tmp_path: Path) -> None:
    gt_dir = davis_root / "Annotations" / "480p"
    subset = tmp_path / "runs" / "subset"
    write_drifting_predictions(gt_dir, subset, RUNS["base"])
    write_csvs(evaluate_sequences(gt_dir, subset, ["alpha", "gamma"], progress=False), subset, "val")
    with pytest.raises(RunResultsError) as refused:
        write_comparison([runs["base"], subset], tmp_path / "x.html")
    message = str(refused.value)
    assert "\n" not in message
    expected = f"{runs['base']} and {subset} were scored on different sequences (only in {runs['base']}: beta, delta)"
    assert expected in message

    unscored = tmp_path / "runs" / "official-only"
    write_drifting_predictions(gt_dir, unscored, RUNS["base"])
    score_davis(davis_root, "val", unscored, progress=False)
    with pytest.raises(RunResultsError, match=rf"^{re.escape(str(unscored))}: no per-frame_results-<set>\.csv here"):
        write_comparison([runs["base"], unscored], tmp_path / "x.html")
    with pytest.raises(RunResultsError, match="need two or more run folders"):
        write_comparison([runs["base"]], tmp_path / "x.html")
    with pytest.raises(RunResultsError, match="2 names for 3 runs"):
        write_comparison(list(runs.values()), tmp_path / "x.html", names=["a", "b"])
    assert not (tmp_path / "x.html").exists()
