"""Scoring folders of masks: DAVIS and vos-benchmark conventions, CSVs, errors, the command line.

The crafted sequences use 10x10 frames (boundary tolerance 1 px) and the shapes whose J and F are
worked out by hand in test_metrics.py:

* square rows 2-5 x cols 2-5 vs itself shifted right by 2: J = 8/24, F = 10/16;
* square vs the square widened to cols 2-7: J = 16/24, F = 5/6 (J = F = 1 when cols 6-7 are void);
* a 1-px line vs the same line 2 rows lower: J = 0, F = 1/2;
* empty vs empty: J = F = 1; empty vs non-empty (either way): J = F = 0.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from s3.config import ConfigError, compose, to_dataclass
from s3.config.score import ScoreConfig
from s3.eval import MaskFileError, ScoreTable, evaluate_sequences, score_davis, write_csvs
from s3.run.cli import run_job
from s3.run.scores import score_from_config

REPO_ROOT = Path(__file__).resolve().parents[2]
SHAPE = (10, 10)


def labels(*objects: tuple[int, tuple[slice, slice]]) -> np.ndarray:
    """A 10x10 label map with ``object id`` painted over each ``(rows, cols)`` slice pair."""
    frame = np.zeros(SHAPE, dtype=np.uint8)
    for object_id, region in objects:
        frame[region] = object_id
    return frame


SQUARE = (slice(2, 6), slice(2, 6))
SQUARE_SHIFTED_2 = (slice(2, 6), slice(4, 8))
SQUARE_WIDENED = (slice(2, 6), slice(2, 8))
WIDENING = (slice(2, 6), slice(6, 8))
LINE_ROW_8 = (slice(8, 9), slice(2, 8))
LINE_ROW_6 = (slice(6, 7), slice(2, 8))
EVERYWHERE = (slice(0, 10), slice(0, 10))


def write_png(path: Path, frame: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(frame)
    image.putpalette([value for index in range(256) for value in (index, 255 - index, 7 * index % 256)])
    image.save(path)


def write_sequence(folder: Path, frames: dict[str, np.ndarray]) -> None:
    for name, frame in frames.items():
        write_png(folder / f"{name}.png", frame)


@pytest.fixture
def davis_root(tmp_path: Path) -> Path:
    """A DAVIS-layout root with two sequences and their predictions under ``results/``.

    alpha (5 frames, objects 1 and 2; frames 1-3 scored):
        object 1: exact (1, 1), shifted by 2 (8/24, 10/16), missed (0, 0)
        object 2: exact (1, 1), absent from both (1, 1), absent from the GT but predicted (0, 0)
    beta (4 frames, object 1 and void 255 next to it; frames 1-2 scored):
        object 1 widened over the void, twice: (16/24, 5/6) as the official tool counts void
    The first prediction of alpha is missing and the last ones are wrong: neither is scored.
    """
    root = tmp_path / "DAVIS"
    (root / "ImageSets" / "2017").mkdir(parents=True)
    (root / "ImageSets" / "2017" / "val.txt").write_text("alpha\nbeta\n\n")
    gt = root / "Annotations" / "480p"
    pred = root / "results"
    both = labels((1, SQUARE), (2, LINE_ROW_8))
    write_sequence(gt / "alpha", {"00000": both, "00001": both, "00002": labels((1, SQUARE)),
                                  "00003": labels((1, SQUARE)), "00004": labels((1, SQUARE))})
    write_sequence(pred / "alpha", {"00001": both, "00002": labels((1, SQUARE_SHIFTED_2)),
                                    "00003": labels((2, LINE_ROW_8)), "00004": labels((2, EVERYWHERE))})
    with_void = labels((255, WIDENING), (1, SQUARE))
    write_sequence(gt / "beta", {name: with_void for name in ("00000", "00001", "00002", "00003")})
    write_sequence(pred / "beta", {"00000": labels((1, SQUARE_WIDENED)), "00001": labels((1, SQUARE_WIDENED)),
                                   "00002": labels((1, SQUARE_WIDENED)), "00003": labels()})
    return root


# Per object (J frames; F frames) -> statistics with 3 frames (bins: frames 0-1 and frame 2) or
# 2 frames (bins: frame 0 and frame 1):
#   alpha_1  J [1, 1/3, 0]  mean 4/9  recall 1/3  decay 2/3 | F [1, 5/8, 0]  mean 13/24  recall 2/3  decay 13/16
#   alpha_2  J [1, 1, 0]    mean 2/3  recall 2/3  decay 1   | F [1, 1, 0]    mean 2/3    recall 2/3  decay 1
#   beta_1   J [2/3, 2/3]   mean 2/3  recall 1    decay 0   | F [5/6, 5/6]   mean 5/6    recall 1    decay 0
EXPECTED_GLOBAL = {
    "J-Mean": (4 / 9 + 2 / 3 + 2 / 3) / 3,
    "J-Recall": (1 / 3 + 2 / 3 + 1) / 3,
    "J-Decay": (2 / 3 + 1 + 0) / 3,
    "F-Mean": (13 / 24 + 2 / 3 + 5 / 6) / 3,
    "F-Recall": (2 / 3 + 2 / 3 + 1) / 3,
    "F-Decay": (13 / 16 + 1 + 0) / 3,
}
EXPECTED_GLOBAL["J&F-Mean"] = (EXPECTED_GLOBAL["J-Mean"] + EXPECTED_GLOBAL["F-Mean"]) / 2


def test_davis_mode_matches_hand_computed_scores(davis_root: Path) -> None:
    table = score_davis(davis_root, "val", davis_root / "results", progress=False)
    assert [o.name for o in table.objects] == ["alpha_1", "alpha_2", "beta_1"]
    np.testing.assert_allclose(table.objects[0].j, [1, 1 / 3, 0])
    np.testing.assert_allclose(table.objects[0].f, [1, 10 / 16, 0])
    np.testing.assert_allclose(table.objects[1].j, [1, 1, 0])
    np.testing.assert_allclose(table.objects[1].f, [1, 1, 0])
    np.testing.assert_allclose(table.objects[2].j, [16 / 24, 16 / 24])
    np.testing.assert_allclose(table.objects[2].f, [5 / 6, 5 / 6])
    metrics = table.global_metrics()
    assert list(metrics) == ["J&F-Mean", "J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay"]
    for name, value in EXPECTED_GLOBAL.items():
        assert metrics[name] == pytest.approx(value), name


def test_csvs_are_written_like_the_official_tool(davis_root: Path) -> None:
    results = davis_root / "results"
    (results / "global_results-val.csv").write_text("stale\n")  # the official tool would re-use this
    score_davis(davis_root, "val", results, progress=False)
    assert (results / "global_results-val.csv").read_text() == (
        "J&F-Mean,J-Mean,J-Recall,J-Decay,F-Mean,F-Recall,F-Decay\n"
        "0.637,0.593,0.667,0.556,0.681,0.778,0.604\n"
    )
    assert (results / "per-sequence_results-val.csv").read_text() == (
        "Sequence,J-Mean,F-Mean\nalpha_1,0.444,0.542\nalpha_2,0.667,0.667\nbeta_1,0.667,0.833\n"
    )


def test_out_folder_and_readable_table(davis_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "scores"
    table = score_davis(davis_root, "val", davis_root / "results", out=out, progress=False)
    assert sorted(p.name for p in out.iterdir()) == ["global_results-val.csv", "per-sequence_results-val.csv"]
    assert not (davis_root / "results" / "global_results-val.csv").exists()
    text = table.format()
    assert "alpha_1" in text and "beta_1" in text
    assert "63.7" in text.splitlines()[-1]  # J&F x100


def test_ignore_void_removes_255_from_j_and_f(davis_root: Path) -> None:
    gt_dir = davis_root / "Annotations" / "480p"
    table = evaluate_sequences(gt_dir, davis_root / "results", ["beta"], ignore_void=True, progress=False)
    np.testing.assert_allclose(table.objects[0].j, [1, 1])
    np.testing.assert_allclose(table.objects[0].f, [1, 1])


def test_parallel_workers_give_the_in_process_result(davis_root: Path) -> None:
    gt_dir, pred_dir = davis_root / "Annotations" / "480p", davis_root / "results"
    serial = evaluate_sequences(gt_dir, pred_dir, ["beta", "alpha"], workers=1, progress=False)
    parallel = evaluate_sequences(gt_dir, pred_dir, ["beta", "alpha"], workers=2, progress=False)
    assert [o.name for o in parallel.objects] == ["beta_1", "alpha_1", "alpha_2"]  # the order asked for
    assert parallel.per_object_rows() == serial.per_object_rows()
    assert parallel.global_metrics() == serial.global_metrics()


def test_vos_benchmark_mode(tmp_path: Path) -> None:
    """Ids 3, 5 and 255, sparse ground truth, late objects, an id only in the prediction.

    Scored ground-truth frames 00005, 00010, 00015 (00000 and 00020 are first and last):
        255: exact (1, 1), shifted by 2 (8/24, 10/16), exact (1, 1)
        3:   first in 00010: exact (1, 1), then predicted 2 rows low (0, 1/2)
        5:   predicted in 00010 before it is in the ground truth (0, 0), then exact in 00015 (1, 1)
        7:   only ever predicted: tracked but not reported
    """
    corner = (slice(0, 1), slice(9, 10))
    stray = (slice(9, 10), slice(0, 1))
    gt = {
        "00000": labels((255, SQUARE)),
        "00005": labels((255, SQUARE)),
        "00010": labels((255, SQUARE), (3, LINE_ROW_8)),
        "00015": labels((255, SQUARE), (3, LINE_ROW_6), (5, corner)),
        "00020": labels((255, SQUARE), (3, LINE_ROW_6)),
    }
    pred = {f"{index:05d}": labels() for index in range(21)}  # dense predictions; only GT names are read
    pred["00005"] = labels((255, SQUARE))
    pred["00010"] = labels((255, SQUARE_SHIFTED_2), (3, LINE_ROW_8), (5, corner), (7, stray))
    pred["00015"] = labels((255, SQUARE), (3, LINE_ROW_8), (5, corner))
    write_sequence(tmp_path / "gt" / "video", gt)
    write_sequence(tmp_path / "pred" / "video", pred)
    table = evaluate_sequences(tmp_path / "gt", tmp_path / "pred", ["video"], mode="vos_benchmark", progress=False)
    assert [o.object_id for o in table.objects] == [3, 5, 255]
    np.testing.assert_allclose(table.objects[0].j, [1, 0])
    np.testing.assert_allclose(table.objects[0].f, [1, 0.5])
    np.testing.assert_allclose(table.objects[1].j, [0, 1])
    np.testing.assert_allclose(table.objects[1].f, [0, 1])
    np.testing.assert_allclose(table.objects[2].j, [1, 1 / 3, 1])
    np.testing.assert_allclose(table.objects[2].f, [1, 10 / 16, 1])
    metrics = table.global_metrics()
    j_mean = (0.5 + 0.5 + 7 / 9) / 3
    f_mean = (0.75 + 0.5 + 2.625 / 3) / 3
    assert (metrics["J-Mean"], metrics["F-Mean"]) == pytest.approx((j_mean, f_mean))
    assert metrics["J&F-Mean"] == pytest.approx((j_mean + f_mean) / 2)
    # The DAVIS convention reads 255 as void, so the first frame has no object and 255 is foreign.
    with pytest.raises(MaskFileError, match=r"pred/video/00005\.png: predicted id 255 is not an object"):
        evaluate_sequences(tmp_path / "gt", tmp_path / "pred", ["video"], progress=False)


# ---------------------------------------------------------------- bad input: one line naming the file


def test_predicted_id_outside_the_ground_truth(davis_root: Path) -> None:
    write_png(davis_root / "results" / "alpha" / "00002.png", labels((3, SQUARE)))
    with pytest.raises(MaskFileError, match=r"results/alpha/00002\.png: predicted id 3 .* ids 1\.\.2"):
        score_davis(davis_root, "val", davis_root / "results", progress=False)


def test_prediction_of_the_wrong_size(davis_root: Path) -> None:
    write_png(davis_root / "results" / "alpha" / "00002.png", np.zeros((12, 10), dtype=np.uint8))
    with pytest.raises(MaskFileError, match=r"results/alpha/00002\.png: size 10x12 differs from the ground truth"):
        score_davis(davis_root, "val", davis_root / "results", workers=2, progress=False)


def test_missing_prediction_and_missing_sequence(davis_root: Path) -> None:
    (davis_root / "results" / "beta" / "00002.png").unlink()
    with pytest.raises(MaskFileError, match=r"results/beta/00002\.png: prediction not found"):
        score_davis(davis_root, "val", davis_root / "results", progress=False)
    for frame in (davis_root / "results" / "beta").iterdir():
        frame.unlink()
    (davis_root / "results" / "beta").rmdir()
    with pytest.raises(MaskFileError, match=r"results/beta: sequence folder not found"):
        score_davis(davis_root, "val", davis_root / "results", progress=False)


def test_rgb_prediction_is_rejected(davis_root: Path) -> None:
    Image.new("RGB", SHAPE).save(davis_root / "results" / "alpha" / "00001.png")
    with pytest.raises(MaskFileError, match=r"results/alpha/00001\.png: image mode 'RGB' is not a label map"):
        score_davis(davis_root, "val", davis_root / "results", progress=False)


def test_empty_table_and_bad_mode(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no objects were scored"):
        write_csvs(ScoreTable("davis"), tmp_path, "val")
    with pytest.raises(ValueError, match="mode='youtube' is not one of"):
        evaluate_sequences(tmp_path, tmp_path, ["a"], mode="youtube")


# ---------------------------------------------------------------- configuration and command line


def test_score_config_validation() -> None:
    cfg = to_dataclass({"davis_root": "D", "results": "R"}, ScoreConfig, "score")
    assert (cfg.subset, cfg.mode, cfg.out, cfg.ignore_void) == ("val", "davis", None, False)
    with pytest.raises(ConfigError, match="score.results is required"):
        to_dataclass({"davis_root": "D"}, ScoreConfig, "score")
    with pytest.raises(ConfigError, match="score.mode='official' is not one of"):
        to_dataclass({"davis_root": "D", "results": "R", "mode": "official"}, ScoreConfig, "score")
    with pytest.raises(ConfigError, match="score.ignore_void applies to mode=davis only"):
        node = {"davis_root": "D", "results": "R", "mode": "vos_benchmark", "ignore_void": True}
        to_dataclass(node, ScoreConfig, "score")


def score_job(*overrides: str) -> tuple[ScoreTable, Path]:
    """The scoring job (``scripts/score.py``) on ``configs/score.yaml`` with ``overrides``, in-process."""
    return run_job(lambda: score_from_config(compose("score", overrides)))


def test_scoring_job(davis_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "cli"
    table, written_to = score_job(f"davis_root={davis_root}", "subset=val", f"results={davis_root / 'results'}",
                                  f"out={out}", "workers=1", "progress=false")
    assert written_to == out and "alpha_2" in table.format()
    with open(out / "global_results-val.csv", newline="") as handle:
        assert list(csv.reader(handle))[1][0] == "0.637"
    assert (out / "per-frame_results-val.csv").is_file() and "alpha" in (out / "report.html").read_text()


def test_scoring_job_bad_input_is_one_line_naming_the_file(davis_root: Path, capsys: pytest.CaptureFixture) -> None:
    write_png(davis_root / "results" / "beta" / "00001.png", labels((9, SQUARE)))
    with pytest.raises(SystemExit) as exit_info:
        score_job(f"davis_root={davis_root}", f"results={davis_root / 'results'}", "progress=false")
    assert exit_info.value.code == 1
    stderr = capsys.readouterr().err
    assert stderr.count("\n") == 1, stderr
    assert stderr.startswith(f"error: {davis_root / 'results' / 'beta' / '00001.png'}: predicted id 9")
