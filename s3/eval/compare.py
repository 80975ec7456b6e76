"""A self-contained HTML page that compares two or more scored runs of one benchmark (e.g. two ablations).

:func:`write_comparison` reads each run folder's score CSVs (the per-frame CSV included; see
:mod:`s3.eval.run_results`) and writes one HTML file in the style of :mod:`s3.eval.report`:

* the runs' settings side by side, the rows that differ highlighted;
* the global metrics of every run, and each run's difference to the first;
* per sequence, J&F of every run and the deltas (run k minus run 1), largest absolute delta first;
* the sequences where the runs disagree most frame by frame (the mean over the sequence's object-frames
  of |J&F of run k - J&F of run 1|, the largest over k), with every object's per-frame J&F curve of
  every run overlaid, one colour per run.

Runs of different sequence or object sets are refused with a one-line ``RunResultsError`` naming the folders.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from s3.eval.report import (
    Cell,
    Column,
    Series,
    escape,
    fold_buttons,
    heat,
    html_page,
    html_table,
    legend,
    line_plot,
    percent,
    run_facts,
    score_cell,
    section,
    signed_percent,
    swatch,
    text_cell,
)
from s3.eval.run_results import RunResults, RunResultsError, flatten_settings, load_run_results
from s3.eval.scoring import GLOBAL_COLUMNS, ObjectScores

DISAGREEING_SEQUENCES = 10
RUN_COLOURS = ("#1f6fb4", "#d2452c", "#2a9d3c", "#8a4fbf", "#e08a00", "#17a2b8", "#6b4f3a", "#d63384")
CURVE_WIDTH, CURVE_WIDTH_STEP = 1.6, 1.4  # the last run's stroke; each earlier run's is wider, so equal curves all show
LISTED_NAMES = 5  # sequences named in a refusal message


def run_colour(index: int) -> str:
    """The curve colour of the ``index``-th run."""
    return RUN_COLOURS[index % len(RUN_COLOURS)]


def _listing(names: set[str]) -> str:
    shown = sorted(names)[:LISTED_NAMES]
    return ", ".join(shown) + (f" and {len(names) - len(shown)} more" if len(names) > len(shown) else "")


def _check_same_benchmark(runs: Sequence[RunResults]) -> None:
    """Refuse runs whose sequences or objects differ from the first run's."""
    base = runs[0]
    for run in runs[1:]:
        for kind, mine, theirs in (
            ("sequences", set(base.sequences), set(run.sequences)),
            ("objects", {o.name for o in base.objects}, {o.name for o in run.objects}),
        ):
            if mine != theirs:
                only_first, only_second = mine - theirs, theirs - mine
                details = "; ".join(
                    f"only in {folder}: {_listing(names)}"
                    for folder, names in ((base.folder, only_first), (run.folder, only_second))
                    if names
                )
                raise RunResultsError(
                    f"{base.folder} and {run.folder} were scored on different {kind} ({details}); "
                    "compare runs of one benchmark"
                )


def _run_names(runs: Sequence[RunResults], names: Optional[Sequence[str]]) -> list[str]:
    """The given names, else the folder names (their full paths where two folder names are equal)."""
    if names is not None:
        names = [str(name) for name in names]
        if len(names) != len(runs):
            raise RunResultsError(f"{len(names)} names for {len(runs)} runs: give one name per run folder")
        if len(set(names)) != len(names):
            raise RunResultsError(f"run names must differ, got {names}")
        return names
    names = [run.folder.resolve().name for run in runs]
    return names if len(set(names)) == len(names) else [str(run.folder) for run in runs]


def jf_by_frame(scores: ObjectScores) -> dict[str, float]:
    """frame name -> J&F of one object."""
    return dict(zip(scores.frames, ((scores.j + scores.f) / 2).tolist()))


def disagreement(base: Sequence[ObjectScores], other: Sequence[ObjectScores]) -> float:
    """Mean |J&F difference| over the object-frames two runs both scored (objects in the same order)."""
    differences = []
    for mine, theirs in zip(base, other):
        first, second = jf_by_frame(mine), jf_by_frame(theirs)
        differences += [abs(second[frame] - value) for frame, value in first.items() if frame in second]
    return float(np.mean(differences)) if differences else 0.0


def _run_cell(name: str, index: int) -> Cell:
    return text_cell(name, f"{swatch(run_colour(index))}{escape(name)}")


def _runs_tables(runs: Sequence[RunResults], names: Sequence[str]) -> list[str]:
    """The runs' facts side by side, then every other setting that differs; differing rows highlighted."""
    facts = [run_facts(run) for run in runs]
    columns = [Column("", numeric=False)] + [Column(name, numeric=False) for name in names]

    def table(table_id: str, rows: dict[str, list[str]]) -> str:
        cells = [[text_cell(label)] + [text_cell(value) for value in values] for label, values in rows.items()]
        differs = ["differs" if len(set(values)) > 1 else "" for values in rows.values()]
        return html_table(table_id, columns, cells, row_classes=differs)

    labels = list(dict.fromkeys(label for run in facts for label in run))
    parts = [table("runs", {label: [f.get(label, "") for f in facts] for label in labels})]
    settings = [flatten_settings(run.settings) for run in runs]
    keys = list(dict.fromkeys(key for flat in settings for key in flat))
    differing = {
        key: [str(flat.get(key, "")) for flat in settings]
        for key in keys
        if len({str(flat.get(key, "")) for flat in settings}) > 1
    }
    if differing:
        parts += ["<h3>Settings that differ (run_settings.json)</h3>", table("settings", differing)]
    return parts


def _global_table(runs: Sequence[RunResults], names: Sequence[str]) -> str:
    columns = [Column("run", numeric=False)] + [Column(metric) for metric in GLOBAL_COLUMNS]
    rows = [
        [_run_cell(name, k)] + [score_cell(run.global_metrics[m]) for m in GLOBAL_COLUMNS]
        for k, (run, name) in enumerate(zip(runs, names))
    ]
    for k in range(1, len(runs)):
        deltas = [runs[k].global_metrics[m] - runs[0].global_metrics[m] for m in GLOBAL_COLUMNS]
        rows.append([text_cell(f"{names[k]} − {names[0]}")] + [Cell(signed_percent(d), d) for d in deltas])
    return html_table("global", columns, rows)


def _delta_table(runs: Sequence[RunResults], names: Sequence[str], anchors: dict[str, str]) -> str:
    columns = [Column("Sequence", numeric=False)]
    columns += [Column(f"J&F {name}") for name in names]
    columns += [Column(f"Δ {name}", tooltip=f"J&F of {name} minus J&F of {names[0]}") for name in names[1:]]
    columns += [Column("largest |Δ|")]
    rows = []
    for sequence in runs[0].sequences:
        scores = [run.sequence_means(sequence)[0] for run in runs]
        deltas = [score - scores[0] for score in scores[1:]]
        link = f'<a href="#{anchors[sequence]}">{escape(sequence)}</a>' if sequence in anchors else escape(sequence)
        rows.append(
            [text_cell(sequence, link)]
            + [score_cell(score, shade=True) for score in scores]
            + [Cell(signed_percent(delta), delta) for delta in deltas]
            + [Cell(percent(max(map(abs, deltas))), max(map(abs, deltas)))]
        )
    rows.sort(key=lambda row: -row[-1].key)  # stable: equal deltas keep the benchmark order
    return html_table("deltas", columns, rows, sortable=True, sorted_by=(len(columns) - 1, "descending"))


def _sequence_curves(
    runs: Sequence[RunResults], names: Sequence[str], sequence: str, anchor: str, spread: float
) -> str:
    per_run = [run.objects_of(sequence) for run in runs]
    summary = ", ".join(
        f"{swatch(run_colour(k))}{escape(name)} {percent(run.sequence_means(sequence)[0])}"
        for k, (run, name) in enumerate(zip(runs, names))
    )
    plots = []
    for position, scores in enumerate(per_run[0]):
        series = [
            Series(
                f"{names[k]}, object {scores.object_id}",
                run_colour(k),
                objects[position].frames,
                (objects[position].j + objects[position].f) / 2,
                width=CURVE_WIDTH + CURVE_WIDTH_STEP * (len(runs) - 1 - k),
            )
            for k, objects in enumerate(per_run)
        ]
        plots.append(line_plot(series, f"{sequence}, object {scores.object_id}: per-frame J&F of each run",
                               f"object {scores.object_id} J&F ×100"))
    return (
        f'<details class="sequence" open id="{anchor}" data-sequence="{escape(sequence)}" '
        f'data-disagreement="{spread!r}">'
        f'<summary><b>{escape(sequence)}</b> <span class="badge" style="{heat(1 - spread)}">mean |per-frame '
        f"J&amp;F difference| {percent(spread)}</span> J&amp;F: {summary}</summary>"
        f'<div class="plots">{"".join(plots)}</div></details>'
    )


def write_comparison(
    run_dirs: Sequence[Path],
    out: Path,
    names: Optional[Sequence[str]] = None,
    *,
    set_name: Optional[str] = None,
    disagreeing: int = DISAGREEING_SEQUENCES,
    title: Optional[str] = None,
) -> Path:
    """Write the HTML comparison of two or more scored run folders and return its path.

    Each folder holds the score CSVs of ``set_name`` (default: each folder's only set with a per-frame
    CSV) and optionally ``run_settings.json`` / ``run_summary.json``. ``names`` label the runs (default:
    the folder names); run 1 is the reference of every delta. ``disagreeing`` sequences get their curves.
    """
    if len(run_dirs) < 2:
        raise RunResultsError(f"need two or more run folders to compare, got {[str(d) for d in run_dirs]}")
    runs = [load_run_results(Path(folder), set_name) for folder in run_dirs]
    _check_same_benchmark(runs)
    names = _run_names(runs, names)
    sequences = runs[0].sequences
    spreads = {
        sequence: max(disagreement(runs[0].objects_of(sequence), run.objects_of(sequence)) for run in runs[1:])
        for sequence in sequences
    }
    most = [s for s in sorted(sequences, key=lambda s: -spreads[s]) if spreads[s] > 0][:disagreeing]
    anchors = {sequence: f"seq-{index}" for index, sequence in enumerate(most)}
    keys = legend([(run_colour(k), escape(name)) for k, name in enumerate(names)], lines=True)
    curves = [_sequence_curves(runs, names, s, anchors[s], spreads[s]) for s in most]
    if not curves:
        curves = ["<p>The runs agree on every scored frame.</p>"]
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    sections = [
        section("runs-section", "Runs", *_runs_tables(runs, names)),
        section("global-section", "Global scores (×100)", _global_table(runs, names)),
        section(
            "delta-section",
            f"Per-sequence J&F and deltas to {names[0]} (×100)",
            '<p class="note">Largest absolute delta first; click a header to sort. A sequence name links to its '
            "curves when it is among the most disagreeing.</p>",
            f'<div class="scroll">{_delta_table(runs, names, anchors)}</div>',
        ),
        section(
            "disagreement",
            f"The {len(most)} sequences where the runs disagree most",
            '<p class="note">Ranked by the mean over the sequence\'s object-frames of |per-frame J&amp;F of a run '
            f"minus that of {escape(names[0])}| (the largest over the runs). Earlier runs are drawn wider, so "
            "curves that coincide stay visible.</p>",
            keys,
            fold_buttons("details.sequence"),
            *curves,
        ),
    ]
    navigation = [("runs-section", "runs"), ("global-section", "global"), ("delta-section", "sequences"),
                  ("disagreement", "disagreement")]
    page = html_page(title or "Comparison: " + " vs ".join(names), sections, navigation)
    out.write_text(page, encoding="utf-8")
    return out
