"""The per-frame CSV and the HTML report of one run (``s3.eval.report``), checked as a reader would.

Tiny DAVIS-layout data (24x40 frames, objects 1 and 2 as moving squares); the predictions copy the
ground truth with some objects drifting right by a few pixels per frame (DRIFT), so scores fall along
the video: alpha object 1 slowly, gamma objects 1 and 2 fast (several frames at J = F = 0), beta exact.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tiny_datasets import Element, make_davis, make_first_appearance, parse_page, table_rows, write_drifting_predictions

from s3.data.palette import read_mask
from s3.eval import GLOBAL_COLUMNS, ObjectScores, evaluate_sequences, score_davis, write_csvs, write_report
from s3.eval.metrics import boundary_f_measure, frame_statistics, region_similarity
from s3.eval.report import THUMBNAIL_SIZE, lowest_frames
from s3.eval.run_results import RunResultsError

VIDEOS = {"alpha": 6, "beta": 12, "gamma": 8}  # frames; the first and last are not scored
DRIFT = {"alpha": {1: 1}, "beta": {}, "gamma": {1: 2, 2: 3}}
OBJECTS = (1, 2)
PALETTE_HEX = {1: "#800000", 2: "#008000"}  # DAVIS palette colours of objects 1 and 2
SETTINGS = {
    "dataset": "davis17",
    "model": "s3_tiny",
    "weights": "runs/ablation/weights/main.pth",
    "protocol": {"size": 480, "mem_every": 5, "max_mem_frames": 5, "use_long_term": False},
    "inference": {"top_k": 30, "amp": False, "flip_aug": False},
}
SUMMARY = {"frames": 23, "model_fps": 10.94, "end_to_end_fps": 7.5, "peak_memory_mib": 1234.4, "videos": 3,
           "memory_kind": "CUDA max allocated"}


@pytest.fixture
def davis_root(tmp_path: Path) -> Path:
    root = tmp_path / "DAVIS"
    make_davis(root, VIDEOS, object_ids=OBJECTS)
    return root


@pytest.fixture
def results(davis_root: Path, tmp_path: Path) -> Path:
    """Predictions scored as ``scripts/score.py`` does, the CSVs in the results folder, per-frame CSV included."""
    results = tmp_path / "results"
    write_drifting_predictions(davis_root / "Annotations" / "480p", results, DRIFT)
    score_davis(davis_root, "val", results, progress=False, per_frame=True)
    return results


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def per_frame_from_csv(path: Path) -> dict[tuple[str, int, str], tuple[float, float]]:
    """(sequence, object, frame) -> (J, F) of a per-frame CSV."""
    return {(r["Sequence"], int(r["Object"]), r["Frame"]): (float(r["J"]), float(r["F"])) for r in read_csv(path)}


def number(cell: Element) -> float:
    return float(cell.attrs["data-v"])


# ---------------------------------------------------------------- the per-frame CSV


def test_per_frame_csv_equals_a_direct_recomputation(davis_root: Path, results: Path) -> None:
    gt_dir = davis_root / "Annotations" / "480p"
    expected = []
    for video, frames in VIDEOS.items():
        for object_id in OBJECTS:
            for t in range(1, frames - 1):
                gt = read_mask(gt_dir / video / f"{t:05d}.png") == object_id
                pred = read_mask(results / video / f"{t:05d}.png") == object_id
                j, f = region_similarity(gt, pred), boundary_f_measure(gt, pred)
                expected.append((video, object_id, f"{t:05d}", j, f))
    rows = read_csv(results / "per-frame_results-val.csv")
    assert list(rows[0]) == ["Sequence", "Object", "Frame", "J", "F"]
    assert [(r["Sequence"], int(r["Object"]), r["Frame"]) for r in rows] == [e[:3] for e in expected]
    assert all(re.fullmatch(r"\d\.\d{6}", r[key]) for r in rows for key in ("J", "F"))
    np.testing.assert_allclose([float(r["J"]) for r in rows], [e[3] for e in expected], atol=5e-7)
    np.testing.assert_allclose([float(r["F"]) for r in rows], [e[4] for e in expected], atol=5e-7)
    assert min(e[3] for e in expected) == 0 and 0 < np.mean([e[3] for e in expected]) < 1  # the data is not trivial
    # the official per-sequence CSV is the per-frame means, rounded
    for row in read_csv(results / "per-sequence_results-val.csv"):
        video, object_id = row["Sequence"].rsplit("_", 1)
        mine = [e for e in expected if e[0] == video and e[1] == int(object_id)]
        assert row["J-Mean"] == f"{np.mean([e[3] for e in mine]):.3f}"
        assert row["F-Mean"] == f"{np.mean([e[4] for e in mine]):.3f}"


def test_per_frame_csv_of_late_objects_in_vos_benchmark_mode(tmp_path: Path) -> None:
    """Object 5 enters at frame 4, so its rows start there; object 2 is scored from frame 1."""
    make_first_appearance(tmp_path, "JPEGImages", "FirstMasks", gt_dir="Annotations", frames=8, late=4)
    gt_dir, pred_dir = tmp_path / "Annotations", tmp_path / "pred"
    write_drifting_predictions(gt_dir, pred_dir, {"long_a": {5: 1}})
    table = evaluate_sequences(gt_dir, pred_dir, ["long_a"], mode="vos_benchmark", progress=False)
    paths = write_csvs(table, tmp_path / "scores", "lvos")
    names = ["global_results-lvos.csv", "per-sequence_results-lvos.csv", "per-frame_results-lvos.csv"]
    assert [p.name for p in paths] == names
    scores = per_frame_from_csv(paths[2])
    assert sorted(key[2] for key in scores if key[1] == 2) == ["00001", "00002", "00003", "00004", "00005", "00006"]
    assert sorted(key[2] for key in scores if key[1] == 5) == ["00004", "00005", "00006"]
    for (_, object_id, frame), (j, f) in scores.items():
        gt = read_mask(gt_dir / "long_a" / f"{frame}.png") == object_id
        pred = read_mask(pred_dir / "long_a" / f"{frame}.png") == object_id
        assert (j, f) == pytest.approx((region_similarity(gt, pred), boundary_f_measure(gt, pred)), abs=5e-7)


def test_lowest_frames_deal_ties_across_objects() -> None:
    frames = ("a", "b", "c", "d")
    first = ObjectScores("s", 1, np.array([0.0, 0.0, 0.0, 0.9]), np.array([0.0, 0.0, 0.0, 0.9]), frames)
    second = ObjectScores("s", 2, np.array([0.5, 0.0, 0.2, 1.0]), np.array([0.5, 0.0, 0.4, 1.0]), frames)
    picked = [(w.object_id, w.frame, w.jf) for w in lowest_frames([first, second], 5)]
    # three zeros of object 1 and one of object 2: each object's first zero, then the rest; then 0.3
    assert picked == [(1, "a", 0.0), (2, "b", 0.0), (1, "b", 0.0), (1, "c", 0.0), (2, "c", pytest.approx(0.3))]
    assert lowest_frames([first], 0) == [] and len(lowest_frames([first, second], 100)) == 8


# ---------------------------------------------------------------- the page


def assert_self_contained(text: str, page: Element) -> None:
    """No external resource: no http(s) or protocol-relative src/href, no <link>, no script file."""
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", text, re.IGNORECASE)
    assert "http://" not in text and "https://" not in text
    assert page.find_all("link") == [] and all("src" not in s.attrs for s in page.find_all("script"))
    for element in page.find_all("a"):
        assert not re.match(r"[a-z]+:", element.attrs["href"]), element.attrs["href"]  # relative links only


def check_thumbnails(page: Element, count: int) -> list[np.ndarray]:
    """Every image is an inline JPEG of the thumbnail size; returns them decoded."""
    images = page.find_all("img")
    assert len(images) == 2 * count
    decoded = []
    for image in images:
        prefix = "data:image/jpeg;base64,"
        assert image.attrs["src"].startswith(prefix)
        with Image.open(io.BytesIO(base64.b64decode(image.attrs["src"][len(prefix) :]))) as jpeg:
            assert jpeg.format == "JPEG" and max(jpeg.size) == THUMBNAIL_SIZE
            assert jpeg.size == (int(image.attrs["width"]), int(image.attrs["height"]))
            decoded.append(np.asarray(jpeg.convert("RGB")))
    return decoded


def test_report_of_a_results_folder(davis_root: Path, results: Path) -> None:
    out = write_report(results, davis_root / "Annotations" / "480p", davis_root / "JPEGImages" / "480p")
    assert out == results / "report.html"
    text = out.read_text(encoding="utf-8")
    page = parse_page(text)
    assert_self_contained(text, page)
    assert len(text) < 300_000

    # global table = the global CSV
    global_csv = read_csv(results / "global_results-val.csv")[0]
    headers, rows = table_rows(page, "global")
    assert [h.text for h in headers][: len(GLOBAL_COLUMNS)] == list(GLOBAL_COLUMNS)
    for name, cell in zip(GLOBAL_COLUMNS, rows[0]):
        assert number(cell) == float(global_csv[name])
        assert cell.text == f"{100 * float(global_csv[name]):.1f}"

    # objects table = the per-sequence CSV (means) and the per-frame CSV (recall, decay, lowest frame)
    per_sequence = read_csv(results / "per-sequence_results-val.csv")
    means = {r["Sequence"]: (float(r["J-Mean"]), float(r["F-Mean"])) for r in per_sequence}
    per_frame = per_frame_from_csv(results / "per-frame_results-val.csv")
    headers, rows = table_rows(page, "objects")
    columns = [h.text for h in headers]
    assert all(h.attrs.get("data-type") == "num" for h in headers if h.text not in ("Sequence", "lowest frame"))
    seen = set()
    for row in rows:
        cells = dict(zip(columns, row))
        video, object_id = cells["Sequence"].attrs["data-v"], int(number(cells["object"]))
        seen.add((video, object_id))
        j_mean, f_mean = means[f"{video}_{object_id}"]
        assert (number(cells["J-Mean"]), number(cells["F-Mean"])) == (j_mean, f_mean)
        assert cells["J-Mean"].text == f"{100 * j_mean:.1f}"
        assert number(cells["J&F"]) == pytest.approx((j_mean + f_mean) / 2)
        frames = sorted(k[2] for k in per_frame if k[:2] == (video, object_id))
        j = np.array([per_frame[(video, object_id, frame)][0] for frame in frames])
        f = np.array([per_frame[(video, object_id, frame)][1] for frame in frames])
        assert number(cells["J-Recall"]) == pytest.approx(frame_statistics(j).recall)
        assert number(cells["F-Decay"]) == pytest.approx(frame_statistics(f).decay)
        assert number(cells["frames"]) == len(frames) == VIDEOS[video] - 2
        assert cells["lowest frame"].attrs["data-v"] == frames[int(np.argmin((j + f) / 2))]
    assert seen == {(video, object_id) for video in VIDEOS for object_id in OBJECTS}
    jf_column = [number(row[columns.index("J&F")]) for row in rows]
    assert jf_column == sorted(jf_column)  # worst object first, as the header's aria-sort says
    assert headers[columns.index("J&F")].attrs["aria-sort"] == "ascending"

    # sequences table: the means over each sequence's objects, sortable by every column
    headers, rows = table_rows(page, "sequences")
    columns = [h.text for h in headers]
    assert {row[0].attrs["data-v"] for row in rows} == set(VIDEOS)
    for row in rows:
        cells = dict(zip(columns, row))
        video = cells["Sequence"].attrs["data-v"]
        j = np.mean([means[f"{video}_{o}"][0] for o in OBJECTS])
        f = np.mean([means[f"{video}_{o}"][1] for o in OBJECTS])
        assert (number(cells["J-Mean"]), number(cells["F-Mean"])) == pytest.approx((j, f))
        assert number(cells["J&F"]) == pytest.approx((j + f) / 2)
        assert cells["J&F"].text == f"{50 * (j + f):.1f}"
        assert number(cells["objects"]) == 2 and number(cells["frames"]) == VIDEOS[video] - 2
        assert all("data-v" in cell.attrs for cell in row)
        link = cells["Sequence"].find("a")
        target = page.find("details", id=link.attrs["href"][1:])
        assert target is not None and target.attrs["data-sequence"] == video
    assert [number(row[1]) for row in rows] == sorted(number(row[1]) for row in rows)

    # the 12 worst object-frames: really the lowest per-frame J&F of the run, lowest first
    cards = page.find_all("figure", class_="frame")
    assert len(cards) == 12
    picked = [(c.attrs["data-sequence"], int(c.attrs["data-object"]), c.attrs["data-frame"]) for c in cards]
    assert len(set(picked)) == 12
    jf = {key: (j + f) / 2 for key, (j, f) in per_frame.items()}
    picked_scores = [jf[key] for key in picked]
    assert picked_scores == sorted(picked_scores)
    assert max(picked_scores) <= min(score for key, score in jf.items() if key not in picked)
    assert [float(c.attrs["data-jf"]) for c in cards] == pytest.approx(picked_scores)
    assert picked[0][0] == "gamma" and picked_scores[0] == 0
    thumbnails = check_thumbnails(page, 12)
    assert np.all(np.abs(thumbnails[0][0, 0].astype(int) - 30) < 12)  # the frame's grey background, not black

    # per sequence: one <details> with a J plot and an F plot, one curve per object in its palette colour
    details = page.find_all("details", class_="sequence")
    assert [d.attrs["data-sequence"] for d in details] == ["gamma", "alpha", "beta"]  # worst first
    for block in details:
        plots = block.find_all("svg")
        assert len(plots) == 2
        for plot, name in zip(plots, ("J", "F")):
            lines = plot.find_all("polyline")
            assert [line.attrs["stroke"] for line in lines] == [PALETTE_HEX[o] for o in OBJECTS]
            assert [line.find("title").text for line in lines] == [f"object {o} {name}" for o in OBJECTS]
            scored = VIDEOS[block.attrs["data-sequence"]] - 2
            assert all(len(line.attrs["points"].split()) == scored for line in lines)
            assert {"0", "50", "100", "frame", f"{name} ×100"} <= {t.text for t in plot.find_all("text")}


def test_report_of_an_evaluation_run_folder(davis_root: Path, tmp_path: Path) -> None:
    """Settings, FPS and overlay-video links of an evaluation run; no image folder: masks alone."""
    gt_dir, run = davis_root / "Annotations" / "480p", tmp_path / "run"
    write_drifting_predictions(gt_dir, run / "Annotations", DRIFT)
    write_csvs(evaluate_sequences(gt_dir, run / "Annotations", list(VIDEOS), progress=False), run, "davis17")
    (run / "run_settings.json").write_text(json.dumps(SETTINGS))
    (run / "run_summary.json").write_text(json.dumps(SUMMARY))
    (run / "Visualizations").mkdir()
    (run / "Visualizations" / "gamma.mp4").write_bytes(b"not really a video")
    out = write_report(run, gt_dir, out=tmp_path / "pages" / "eval.html", worst_frames=4)
    text = out.read_text(encoding="utf-8")
    page = parse_page(text)
    assert_self_contained(text, page)

    headers, rows = table_rows(page, "run")
    facts = {h.text: row[0].text for h, row in zip(headers, rows)}
    assert facts["preset"] == "davis17" and facts["model"] == "s3_tiny" and facts["scored set"] == "davis17"
    assert facts["weights"] == "runs/ablation/weights/main.pth" and facts["size"] == "480"
    assert facts["memory"] == "every 5 frames, at most 5 frames" and facts["precision"] == "fp32"
    assert (facts["model-only FPS"], facts["end-to-end FPS"]) == ("10.94", "7.50")
    assert facts["peak memory"] == "1234 MiB (CUDA max allocated)"
    assert '"max_mem_frames": 5' in page.find("pre").text  # the whole settings file, folded

    videos = [a.attrs["href"] for a in page.find_all("a") if a.attrs["href"].endswith(".mp4")]
    assert videos and set(videos) == {"../run/Visualizations/gamma.mp4"}
    assert (out.parent / videos[0]).resolve() == (run / "Visualizations" / "gamma.mp4").resolve()
    for block in page.find_all("details", class_="sequence"):
        has_link = block.find("summary").find("a") is not None
        assert has_link == (block.attrs["data-sequence"] == "gamma")

    assert len(page.find_all("figure", class_="frame")) == 4
    thumbnails = check_thumbnails(page, 4)
    assert all(np.all(t[0, 0] < 12) for t in thumbnails)  # masks alone, on black


def test_report_refuses_runs_without_per_frame_scores(davis_root: Path, tmp_path: Path) -> None:
    results = tmp_path / "old"
    write_drifting_predictions(davis_root / "Annotations" / "480p", results, DRIFT)
    score_davis(davis_root, "val", results, progress=False)  # the official pair only
    assert sorted(p.name for p in results.glob("*.csv")) == ["global_results-val.csv", "per-sequence_results-val.csv"]
    with pytest.raises(RunResultsError, match=r"old: no per-frame_results-<set>\.csv here"):
        write_report(results, davis_root / "Annotations" / "480p")
    score_davis(davis_root, "val", results, progress=False, per_frame=True)
    per_sequence = results / "per-sequence_results-val.csv"
    per_sequence.write_text("".join(per_sequence.read_text().splitlines(keepends=True)[:-1]))  # drop gamma_2
    with pytest.raises(RunResultsError, match=r"per-frame_results-val\.csv: its objects differ from those of per-seq"):
        write_report(results, davis_root / "Annotations" / "480p")
