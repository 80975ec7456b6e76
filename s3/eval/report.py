"""A self-contained HTML report of one scored run: which sequences fail, on which frames, and why.

:func:`write_report` reads a folder with the score CSVs (an evaluation run folder, or the output of
``scripts/score.py``), the predictions and the ground truth, and writes one HTML file that opens from
disk: inline CSS, JavaScript and SVG, images as base64 JPEG data URIs, no external resource. It holds

* the run's settings and speed (``run_settings.json`` / ``run_summary.json``, when present);
* the global J&F table, as the global CSV states it;
* thumbnails of the worst object-frames of the run (lowest per-frame J&F): prediction and ground truth
  side by side, over the frame when an image folder is given, else the masks alone;
* a per-sequence and a per-object table that sort on a header click;
* per sequence, worst first, the per-frame J and F curves of every object, folded in ``<details>``,
  with a link to the overlay video ``Visualizations/<sequence>.mp4`` when it exists.

Scores are shown x100 with one decimal (the CSVs' three decimals). The HTML building blocks (page,
sortable table, SVG line plot) are shared with :mod:`s3.eval.compare`.
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence
from urllib.parse import quote

import cv2
import numpy as np
from PIL import Image

from s3.data.palette import davis_palette, read_mask
from s3.eval.metrics import frame_statistics
from s3.eval.run_results import RunResults, RunResultsError, flatten_settings, load_run_results
from s3.eval.scoring import GLOBAL_COLUMNS, ObjectScores
from s3.eval.visualize import OVERLAY_ALPHA, overlay

REPORT_FILE = "report.html"
WORST_FRAMES = 12
THUMBNAIL_SIZE = 240  # longest side of a worst-frame thumbnail, pixels
THUMBNAIL_QUALITY = 80  # JPEG quality of the thumbnails
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
PLOT_WIDTH, PLOT_HEIGHT = 460, 180
PLOT_MARGINS = (12, 24, 34, 44)  # top, right, bottom, left (room for the last frame name)
MAX_PLOT_POINTS = 400  # longer curves keep each stretch's lowest and highest frame

PAGE_CSS = """
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",sans-serif;color:#222;
  margin:1.5em auto;max-width:1200px;padding:0 1em}
h1{font-size:1.5em;margin-bottom:.2em}h2{font-size:1.2em;margin-top:1.6em;border-bottom:1px solid #ccc}
nav a{margin-right:1em}
table{border-collapse:collapse;margin:.5em 0}
th,td{padding:2px 8px;border-bottom:1px solid #e4e4e4;text-align:right;white-space:nowrap}
th{background:#f3f3f3;position:sticky;top:0}
td.text,th.text{text-align:left}
table.sortable th{cursor:pointer;user-select:none}
table.sortable th[aria-sort=ascending]::after{content:" \\25B2"}
table.sortable th[aria-sort=descending]::after{content:" \\25BC"}
tr.differs td{background:#fff4d6}
.scroll{max-height:32em;overflow:auto;display:inline-block}
.swatch{display:inline-block;width:.9em;height:.9em;vertical-align:-.1em;margin-right:.3em;border:1px solid #555}
.line{display:inline-block;width:1.6em;vertical-align:.25em;margin-right:.3em;border-top:2px solid}
.legend span{margin-right:1.2em}
.badge{padding:0 .4em;border-radius:3px}
details.sequence{margin:.25em 0;border:1px solid #e4e4e4;border-radius:4px;padding:.2em .6em}
details.sequence[open]{background:#fcfcfc}
.plots{display:flex;flex-wrap:wrap;gap:1em}
svg.plot text{font-size:11px;fill:#333}svg.plot .grid{stroke:#e6e6e6}svg.plot .axis{stroke:#888}
.frames{display:flex;flex-wrap:wrap;gap:1em}
figure.frame{margin:0;border:1px solid #ddd;border-radius:4px;padding:.4em;max-width:520px}
figure.frame .pair{display:flex;gap:4px}figure.frame .pair div{text-align:center;font-size:12px;color:#555}
figure.frame img{display:block}
pre{background:#f6f6f6;padding:.6em;overflow:auto;max-height:24em}
.note{color:#666;font-size:12px}
"""

PAGE_SCRIPT = """
"use strict";
function cellKey(row, column, numeric) {
  const cell = row.cells[column];
  const raw = cell.dataset.v !== undefined ? cell.dataset.v : cell.textContent;
  return numeric ? parseFloat(raw) : raw;
}
function sortTable(th) {
  const table = th.closest("table");
  const numeric = th.dataset.type === "num";
  const ascending = th.getAttribute("aria-sort") !== "ascending";
  for (const other of th.parentNode.cells) other.removeAttribute("aria-sort");
  th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
  const keyed = Array.from(table.tBodies[0].rows, row => [cellKey(row, th.cellIndex, numeric), row]);
  keyed.sort(([a], [b]) => {
    if (numeric && (isNaN(a) || isNaN(b))) return isNaN(a) - isNaN(b);
    const order = numeric ? a - b : a.localeCompare(b, undefined, {numeric: true});
    return ascending ? order : -order;
  });
  table.tBodies[0].append(...keyed.map(([, row]) => row));
}
for (const th of document.querySelectorAll("table.sortable th")) {
  th.tabIndex = 0;
  th.addEventListener("click", () => sortTable(th));
  th.addEventListener("keydown", event => { if (event.key === "Enter") sortTable(th); });
}
function openLinkedDetails() {
  const target = document.getElementById(decodeURIComponent(location.hash.slice(1)));
  if (target && target.tagName === "DETAILS") target.open = true;
}
window.addEventListener("hashchange", openLinkedDetails);
openLinkedDetails();
for (const button of document.querySelectorAll("button[data-fold]")) {
  button.addEventListener("click", () => {
    for (const details of document.querySelectorAll(button.dataset.fold)) details.open = button.value === "open";
  });
}
"""


# ---------------------------------------------------------------- HTML building blocks


def escape(text: object) -> str:
    """Text (or any value's str) made safe for HTML content and quoted attributes."""
    return html.escape(str(text), quote=True)


def percent(value: float) -> str:
    """A score in [0, 1] as papers print it: x100 with one decimal."""
    return f"{100 * value:.1f}"


def signed_percent(value: float) -> str:
    """A score difference x100 with a sign and one decimal."""
    return f"{100 * value:+.1f}"


def heat(value: float) -> str:
    """An inline background style from red (score 0) through yellow to green (score 1)."""
    return f"background:hsl({120 * min(max(value, 0.0), 1.0):.0f},70%,86%)"


def object_colour(object_id: int) -> str:
    """The DAVIS palette colour of an object id, as ``#rrggbb``."""
    red, green, blue = davis_palette()[object_id % 256]
    return f"#{red:02x}{green:02x}{blue:02x}"


def swatch(colour: str) -> str:
    """A small filled square of ``colour``."""
    return f'<i class="swatch" style="background:{colour}"></i>'


@dataclass(frozen=True)
class Column:
    """A table column: its header and whether it sorts as numbers."""

    label: str
    numeric: bool = True
    tooltip: str = ""


@dataclass(frozen=True)
class Cell:
    """A table cell: its HTML content, the key it sorts by, an optional inline style."""

    content: str
    key: float | str
    style: str = ""


def score_cell(value: float, shade: bool = False) -> Cell:
    """A score in [0, 1] shown x100 and sorted by its exact value; ``shade`` colours it by value."""
    return Cell(percent(value), value, heat(value) if shade else "")


def text_cell(text: str, content: Optional[str] = None) -> Cell:
    """A cell that sorts as ``text``; ``content`` (HTML) replaces the escaped text when given."""
    return Cell(escape(text) if content is None else content, text)


def html_table(
    table_id: str,
    columns: Sequence[Column],
    rows: Sequence[Sequence[Cell]],
    sortable: bool = False,
    sorted_by: Optional[tuple[int, str]] = None,
    row_classes: Optional[Sequence[str]] = None,
) -> str:
    """A ``<table>``; every cell carries its sort key in ``data-v``. ``sortable`` tables sort on a header
    click; ``sorted_by`` = (column, "ascending" | "descending") marks the order the rows are already in."""
    headers = []
    for index, column in enumerate(columns):
        attributes = ' data-type="num"' if column.numeric else ' class="text"'
        if column.tooltip:
            attributes += f' title="{escape(column.tooltip)}"'
        if sorted_by is not None and sorted_by[0] == index:
            attributes += f' aria-sort="{sorted_by[1]}"'
        headers.append(f"<th{attributes}>{escape(column.label)}</th>")
    body = []
    for row_index, row in enumerate(rows):
        cells = []
        for column, cell in zip(columns, row):
            key = repr(float(cell.key)) if column.numeric else escape(cell.key)
            style = f' style="{cell.style}"' if cell.style else ""
            css_class = "" if column.numeric else ' class="text"'
            cells.append(f'<td data-v="{key}"{css_class}{style}>{cell.content}</td>')
        row_class = f' class="{row_classes[row_index]}"' if row_classes and row_classes[row_index] else ""
        body.append(f"<tr{row_class}>{''.join(cells)}</tr>")
    table_class = ' class="sortable"' if sortable else ""
    return (
        f'<table id="{table_id}"{table_class}><thead><tr>{"".join(headers)}</tr></thead>'
        f"<tbody>\n{chr(10).join(body)}\n</tbody></table>"
    )


def section(section_id: str, heading: str, *parts: str) -> str:
    """A page section with an ``<h2>`` heading."""
    return f'<section id="{section_id}"><h2>{escape(heading)}</h2>\n' + "\n".join(parts) + "\n</section>"


def html_page(title: str, sections: Sequence[str], navigation: Sequence[tuple[str, str]]) -> str:
    """The whole page: ``navigation`` is (section id, label) pairs linked at the top."""
    links = " ".join(f'<a href="#{anchor}">{escape(label)}</a>' for anchor, label in navigation)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{PAGE_CSS}</style></head>\n"
        f"<body><h1>{escape(title)}</h1><nav>{links}</nav>\n"
        + "\n".join(sections)
        + f"\n<script>{PAGE_SCRIPT}</script></body></html>\n"
    )


@dataclass(frozen=True)
class Series:
    """One curve of a line plot: scores in [0, 1] at named frames."""

    label: str
    colour: str
    frames: tuple[str, ...]
    values: np.ndarray
    width: float = 1.6  # stroke width, pixels


def _decimate(x: np.ndarray, y: np.ndarray, limit: int) -> tuple[np.ndarray, np.ndarray]:
    """At most ``limit`` points: each stretch of consecutive frames keeps its lowest and highest (dips stay)."""
    if x.size <= limit:
        return x, y
    keep: list[int] = []
    for stretch in np.array_split(np.arange(x.size), limit // 2):
        keep.extend(sorted({int(stretch[np.argmin(y[stretch])]), int(stretch[np.argmax(y[stretch])])}))
    return x[keep], y[keep]


def line_plot(series: Sequence[Series], title: str, y_label: str) -> str:
    """An inline SVG of per-frame curves: y from 0 to 100, x the union of the series' frames in name order."""
    frames = sorted(set().union(*(s.frames for s in series)))
    position = {name: index for index, name in enumerate(frames)}
    top, right, bottom, left = PLOT_MARGINS
    x_span, y_span = PLOT_WIDTH - left - right, PLOT_HEIGHT - top - bottom

    def x_of(index: np.ndarray | float) -> np.ndarray | float:
        return left + x_span * np.asarray(index) / max(len(frames) - 1, 1)

    def y_of(value: np.ndarray | float) -> np.ndarray | float:
        return top + y_span * (1 - np.asarray(value))

    parts = [
        (
            f'<svg class="plot" width="{PLOT_WIDTH}" height="{PLOT_HEIGHT}" viewBox="0 0 {PLOT_WIDTH} {PLOT_HEIGHT}" '
            f'role="img" aria-label="{escape(title)}"><title>{escape(title)}</title>'
        )
    ]
    for tick in (0, 25, 50, 75, 100):
        y = y_of(tick / 100)
        parts.append(f'<line class="grid" x1="{left}" x2="{left + x_span}" y1="{y:.1f}" y2="{y:.1f}"/>')
        parts.append(f'<text x="{left - 4}" y="{y + 4:.1f}" text-anchor="end">{tick}</text>')
    for index in np.unique(np.linspace(0, len(frames) - 1, min(len(frames), 6)).round().astype(int)):
        x = x_of(index)
        parts.append(f'<line class="axis" x1="{x:.1f}" x2="{x:.1f}" y1="{top + y_span}" y2="{top + y_span + 4}"/>')
        parts.append(f'<text x="{x:.1f}" y="{top + y_span + 15}" text-anchor="middle">{escape(frames[index])}</text>')
    parts.append(f'<line class="axis" x1="{left}" x2="{left}" y1="{top}" y2="{top + y_span}"/>')
    parts.append(f'<line class="axis" x1="{left}" x2="{left + x_span}" y1="{top + y_span}" y2="{top + y_span}"/>')
    parts.append(f'<text x="{left + x_span / 2:.0f}" y="{PLOT_HEIGHT - 3}" text-anchor="middle">frame</text>')
    parts.append(
        f'<text transform="translate(11 {top + y_span / 2:.0f}) rotate(-90)" text-anchor="middle">'
        f"{escape(y_label)}</text>"
    )
    for curve in series:
        x, y = _decimate(np.array([position[name] for name in curve.frames]), np.asarray(curve.values), MAX_PLOT_POINTS)
        xs, ys = x_of(x), y_of(y)
        label = f"<title>{escape(curve.label)}</title>"
        if xs.size == 1:
            parts.append(f'<circle cx="{xs[0]:.1f}" cy="{ys[0]:.1f}" r="2.5" fill="{curve.colour}">{label}</circle>')
            continue
        points = " ".join(f"{a:.0f},{b:.0f}" for a, b in zip(xs, ys))  # whole pixels keep big pages small
        parts.append(
            f'<polyline fill="none" stroke="{curve.colour}" stroke-width="{curve.width}" points="{points}">'
            f"{label}</polyline>"
        )
    parts.append("</svg>")
    return "".join(parts)


def legend(entries: Sequence[tuple[str, str]], lines: bool = False) -> str:
    """Colour keys: (colour, HTML label) pairs, drawn as squares or as line samples."""
    keys = [
        f'<span><i class="line" style="border-color:{colour}"></i>{label}</span>'
        if lines
        else f"<span>{swatch(colour)}{label}</span>"
        for colour, label in entries
    ]
    return f'<div class="legend">{"".join(keys)}</div>'


def fold_buttons(selector: str) -> str:
    """"Open all" / "close all" buttons for the ``<details>`` matching a CSS selector."""
    return (
        f'<p><button type="button" data-fold="{escape(selector)}" value="open">open all</button> '
        f'<button type="button" data-fold="{escape(selector)}" value="close">close all</button></p>'
    )


# ---------------------------------------------------------------- run facts


def run_facts(results: RunResults) -> dict[str, str]:
    """What was run and how fast, as label -> text, from the CSVs' folder and the run's JSON files."""
    settings = flatten_settings(results.settings)
    summary = results.summary
    facts = {"folder": str(results.folder), "scored set": results.set_name}
    for label, key in (("preset", "dataset"), ("model", "model"), ("weights", "weights"), ("size", "protocol.size")):
        if key in settings:
            facts[label] = "none" if settings[key] is None else str(settings[key])
    if "protocol.mem_every" in settings:
        memory = f"every {settings['protocol.mem_every']} frames"
        if "protocol.max_mem_frames" in settings:
            memory += f", at most {settings['protocol.max_mem_frames']} frames"
        if settings.get("protocol.use_long_term"):
            memory += ", long-term memory"
        facts["memory"] = memory
    if "inference.precision" in settings:
        facts["precision"] = str(settings["inference.precision"])
    elif "inference.amp" in settings:
        facts["precision"] = "fp16 autocast" if settings["inference.amp"] else "fp32"
    for label, key in (("flip augmentation", "inference.flip_aug"), ("top-k", "inference.top_k")):
        if key in settings:
            facts[label] = str(settings[key])
    for label, key, unit in (
        ("videos", "videos", "{:.0f}"),
        ("frames", "frames", "{:.0f}"),
        ("model-only FPS", "model_fps", "{:.2f}"),
        ("end-to-end FPS", "end_to_end_fps", "{:.2f}"),
        ("peak memory", "peak_memory_mib", "{:.0f} MiB"),
    ):
        if summary.get(key) is not None:
            facts[label] = unit.format(summary[key])
    if "peak memory" in facts and summary.get("memory_kind"):
        facts["peak memory"] += f" ({summary['memory_kind']})"
    return facts


def _facts_table(facts: dict[str, str]) -> str:
    rows = "".join(
        f'<tr><th class="text">{escape(label)}</th><td class="text">{escape(value)}</td></tr>'
        for label, value in facts.items()
    )
    return f'<table id="run"><tbody>{rows}</tbody></table>'


def overlay_videos(run_dir: Path, sequences: Sequence[str], page_dir: Path) -> dict[str, str]:
    """sequence -> link (relative to ``page_dir``) to ``run_dir/Visualizations/<sequence>.mp4``, where it exists."""
    links = {}
    for sequence in sequences:
        video = run_dir / "Visualizations" / f"{sequence}.mp4"
        if video.is_file():
            links[sequence] = quote(Path(os.path.relpath(video.resolve(), page_dir.resolve())).as_posix())
    return links


def _video_link(links: dict[str, str], sequence: str) -> str:
    return f'<a href="{links[sequence]}">video</a>' if sequence in links else ""


# ---------------------------------------------------------------- worst frames


@dataclass(frozen=True)
class FrameScore:
    """J and F of one object in one frame."""

    sequence: str
    object_id: int
    frame: str
    j: float
    f: float

    @property
    def jf(self) -> float:
        return (self.j + self.f) / 2


def lowest_frames(objects: Sequence[ObjectScores], count: int) -> list[FrameScore]:
    """The ``count`` object-frames of lowest J&F = (J + F) / 2 over all ``objects``, lowest first.

    Equal scores are dealt out across objects (every object's lowest frame, then every object's second
    lowest, ...), so a long failure of one object does not hide the others; ties that remain go in
    object order, then frame order.
    """
    if not objects or count <= 0:
        return []
    jf = [(o.j + o.f) / 2 for o in objects]
    scores = np.concatenate(jf)
    ranks = np.concatenate([np.argsort(np.argsort(values, kind="stable"), kind="stable") for values in jf])
    owners = np.concatenate([np.full(len(values), index) for index, values in enumerate(jf)])
    frame_indices = np.concatenate([np.arange(len(values)) for values in jf])
    lowest = []
    for choice in np.lexsort((frame_indices, owners, ranks, scores))[:count]:
        scores_of_object, index = objects[owners[choice]], frame_indices[choice]
        lowest.append(FrameScore(
            scores_of_object.sequence,
            scores_of_object.object_id,
            scores_of_object.frames[index],
            float(scores_of_object.j[index]),
            float(scores_of_object.f[index]),
        ))
    return lowest


def data_uri(rgb: np.ndarray) -> str:
    """An (H, W, 3) uint8 RGB image as a base64 JPEG data URI."""
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", quality=THUMBNAIL_QUALITY)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _frame_image(image_dir: Path, sequence: str, frame: str, shape: tuple[int, int]) -> np.ndarray:
    """The RGB frame ``image_dir/<sequence>/<frame>.jpg`` (or .jpeg/.png), resized to ``shape`` if needed."""
    for suffix in IMAGE_SUFFIXES:
        path = image_dir / sequence / f"{frame}{suffix}"
        if path.is_file():
            with Image.open(path) as image:
                rgb = np.asarray(image.convert("RGB"))
            if rgb.shape[:2] != shape:
                rgb = cv2.resize(rgb, (shape[1], shape[0]), interpolation=cv2.INTER_AREA)
            return rgb
    raise RunResultsError(f"{image_dir / sequence / frame}.jpg: frame image not found (nor .jpeg or .png)")


def thumbnail(labels: np.ndarray, image: Optional[np.ndarray], focus_id: int) -> np.ndarray:
    """The label map tinted over ``image`` (or alone on black), its longest side scaled to THUMBNAIL_SIZE, the
    object ``focus_id`` outlined in white."""
    labels = labels.astype(np.int64)  # overlay() takes ids modulo 256, which uint8 cannot hold
    if image is None:
        picture = overlay(np.zeros((*labels.shape, 3), np.uint8), labels, alpha=1.0)
    else:
        picture = overlay(image, labels, OVERLAY_ALPHA)
    height, width = labels.shape
    scale = THUMBNAIL_SIZE / max(height, width)
    size = (max(round(width * scale), 1), max(round(height * scale), 1))
    small = cv2.resize(picture, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_NEAREST)
    focus = cv2.resize((labels == focus_id).astype(np.uint8), size, interpolation=cv2.INTER_NEAREST)
    contours, _ = cv2.findContours(focus, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(small, contours, -1, (255, 255, 255), 1)
    return small


def _frame_card(
    worst: FrameScore, gt_dir: Path, pred_dir: Path, image_dir: Optional[Path], anchor: str, video: str
) -> str:
    gt = read_mask(gt_dir / worst.sequence / f"{worst.frame}.png")
    pred = read_mask(pred_dir / worst.sequence / f"{worst.frame}.png")
    if pred.shape != gt.shape:
        raise RunResultsError(f"{pred_dir / worst.sequence / worst.frame}.png: size differs from the ground truth")
    image = _frame_image(image_dir, worst.sequence, worst.frame, gt.shape) if image_dir is not None else None
    panels = []
    for label, labels in (("prediction", pred), ("ground truth", gt)):
        small = thumbnail(labels, image, worst.object_id)
        panels.append(
            f'<div>{label}<img src="{data_uri(small)}" width="{small.shape[1]}" height="{small.shape[0]}" '
            f'alt="{label}, {escape(worst.sequence)} frame {escape(worst.frame)}"></div>'
        )
    return (
        f'<figure class="frame" data-sequence="{escape(worst.sequence)}" data-object="{worst.object_id}" '
        f'data-frame="{escape(worst.frame)}" data-jf="{worst.jf!r}">'
        f'<div class="pair">{"".join(panels)}</div><figcaption>'
        f'<a href="#{anchor}">{escape(worst.sequence)}</a> frame {escape(worst.frame)}, '
        f"object {swatch(object_colour(worst.object_id))}{worst.object_id} (outlined): "
        f'<span class="badge" style="{heat(worst.jf)}">J&amp;F {percent(worst.jf)}</span> '
        f"J {percent(worst.j)}, F {percent(worst.f)} {video}</figcaption></figure>"
    )


# ---------------------------------------------------------------- sections of the report


def _global_table(results: RunResults) -> str:
    columns = [Column(name) for name in GLOBAL_COLUMNS] + [Column("sequences"), Column("objects")]
    row = [score_cell(results.global_metrics[name]) for name in GLOBAL_COLUMNS]
    row += [Cell(str(count), count) for count in (len(results.sequences), len(results.objects))]
    return html_table("global", columns, [row])


def _sequence_table(results: RunResults, anchors: dict[str, str], videos: dict[str, str]) -> str:
    columns = [
        Column("Sequence", numeric=False),
        Column("J&F", tooltip="(J + F) / 2, means over the sequence's objects"),
        Column("J-Mean"),
        Column("F-Mean"),
        Column("objects"),
        Column("frames", tooltip="scored frames"),
        Column("worst object", tooltip="J&F of the sequence's lowest object"),
        Column("lowest frame", tooltip="lowest per-frame J&F of any object"),
        Column("video", numeric=False),
    ]
    rows = []
    for sequence in results.sequences:
        objects = results.objects_of(sequence)
        jf, j, f = results.sequence_means(sequence)
        worst_object = min(sum(results.means(o)) / 2 for o in objects)
        lowest = min(float(np.min((o.j + o.f) / 2)) for o in objects)
        frames = len(set().union(*(o.frames for o in objects)))
        rows.append([
            text_cell(sequence, f'<a href="#{anchors[sequence]}">{escape(sequence)}</a>'),
            score_cell(jf, shade=True),
            score_cell(j),
            score_cell(f),
            Cell(str(len(objects)), len(objects)),
            Cell(str(frames), frames),
            score_cell(worst_object, shade=True),
            score_cell(lowest, shade=True),
            text_cell("video" if sequence in videos else "", _video_link(videos, sequence)),
        ])
    rows.sort(key=lambda row: row[1].key)
    return html_table("sequences", columns, rows, sortable=True, sorted_by=(1, "ascending"))


def _object_table(results: RunResults, anchors: dict[str, str]) -> str:
    columns = [
        Column("Sequence", numeric=False),
        Column("object"),
        Column("J&F"),
        Column("J-Mean"),
        Column("J-Recall", tooltip="fraction of frames with J > 0.5 (from the per-frame CSV)"),
        Column("J-Decay", tooltip="first quarter minus last quarter of the frames (from the per-frame CSV)"),
        Column("F-Mean"),
        Column("F-Recall", tooltip="fraction of frames with F > 0.5 (from the per-frame CSV)"),
        Column("F-Decay", tooltip="first quarter minus last quarter of the frames (from the per-frame CSV)"),
        Column("frames", tooltip="scored frames"),
        Column("lowest frame", numeric=False, tooltip="the frame of lowest J&F"),
        Column("lowest J&F"),
    ]
    rows = []
    for scores in results.objects:
        j_mean, f_mean = results.means(scores)
        j_stats, f_stats = frame_statistics(scores.j), frame_statistics(scores.f)
        jf = (scores.j + scores.f) / 2
        lowest = int(np.argmin(jf))
        rows.append([
            text_cell(scores.sequence, f'<a href="#{anchors[scores.sequence]}">{escape(scores.sequence)}</a>'),
            Cell(f"{swatch(object_colour(scores.object_id))}{scores.object_id}", scores.object_id),
            score_cell((j_mean + f_mean) / 2, shade=True),
            score_cell(j_mean),
            score_cell(j_stats.recall),
            score_cell(j_stats.decay),
            score_cell(f_mean),
            score_cell(f_stats.recall),
            score_cell(f_stats.decay),
            Cell(str(len(scores.frames)), len(scores.frames)),
            text_cell(scores.frames[lowest]),
            score_cell(float(jf[lowest]), shade=True),
        ])
    rows.sort(key=lambda row: row[2].key)
    return html_table("objects", columns, rows, sortable=True, sorted_by=(2, "ascending"))


def _sequence_curves(results: RunResults, sequence: str, anchor: str, video: str) -> str:
    objects = results.objects_of(sequence)
    jf, j, f = results.sequence_means(sequence)
    frames = len(set().union(*(o.frames for o in objects)))
    keys = legend([
        (object_colour(o.object_id), f"object {o.object_id}: J&amp;F {percent(sum(results.means(o)) / 2)}")
        for o in objects
    ])
    plots = [
        line_plot(
            [Series(f"object {o.object_id} {name}", object_colour(o.object_id), o.frames, getattr(o, name.lower()))
             for o in objects],
            f"{sequence}: per-frame {name} of each object",
            f"{name} ×100",
        )
        for name in ("J", "F")
    ]
    return (
        f'<details class="sequence" id="{anchor}" data-sequence="{escape(sequence)}"><summary>'
        f'<b>{escape(sequence)}</b> <span class="badge" style="{heat(jf)}">J&amp;F {percent(jf)}</span> '
        f"J {percent(j)}, F {percent(f)}; {len(objects)} object{'s' * (len(objects) != 1)}, {frames} scored frames "
        f'{video}</summary>{keys}<div class="plots">{"".join(plots)}</div></details>'
    )


def write_report(
    run_dir: Path,
    gt_dir: Path,
    image_dir: Optional[Path] = None,
    *,
    pred_dir: Optional[Path] = None,
    set_name: Optional[str] = None,
    out: Optional[Path] = None,
    worst_frames: int = WORST_FRAMES,
    title: Optional[str] = None,
) -> Path:
    """Write the HTML report of one scored run and return its path.

    ``run_dir`` holds the score CSVs (``set_name``: default the only set with a per-frame CSV) and
    optionally ``run_settings.json``, ``run_summary.json`` and ``Visualizations/<sequence>.mp4``.
    Predictions are read from ``pred_dir`` (default ``run_dir/Annotations`` when it exists, else
    ``run_dir``), ground truth from ``gt_dir/<sequence>/<frame>.png`` and frames, when ``image_dir`` is
    given, from ``image_dir/<sequence>/<frame>.jpg``; only the ``worst_frames`` thumbnails need them.
    ``out`` defaults to ``run_dir/report.html``.
    """
    run_dir, gt_dir = Path(run_dir), Path(gt_dir)
    results = load_run_results(run_dir, set_name)
    if pred_dir is None:
        pred_dir = run_dir / "Annotations" if (run_dir / "Annotations").is_dir() else run_dir
    out = Path(out) if out is not None else run_dir / REPORT_FILE
    image_dir = Path(image_dir) if image_dir is not None else None
    sequences = results.sequences
    anchors = {sequence: f"seq-{index}" for index, sequence in enumerate(sequences)}
    videos = overlay_videos(run_dir, sequences, out.parent)
    facts = run_facts(results)
    title = title or " / ".join(v for v in (run_dir.resolve().name, facts.get("model"), results.set_name) if v)

    run_parts = [_facts_table(facts)]
    if results.settings:
        settings_text = escape(json.dumps(results.settings, indent=2, sort_keys=True))
        run_parts.append(
            f"<details><summary>all settings (run_settings.json)</summary><pre>{settings_text}</pre></details>"
        )
    worst = lowest_frames(results.objects, worst_frames)
    backdrop = "over the frame" if image_dir is not None else "masks alone (no image folder given)"
    cards = [
        _frame_card(w, gt_dir, Path(pred_dir), image_dir, anchors[w.sequence], _video_link(videos, w.sequence))
        for w in worst
    ]
    by_score = sorted(sequences, key=lambda s: results.sequence_means(s)[0])
    sections = [
        section("summary", "Run", *run_parts, "<h3>Global scores (×100)</h3>", _global_table(results)),
        section(
            "worst-frames",
            f"The {len(worst)} worst object-frames",
            f'<p class="note">Lowest per-frame J&amp;F of any object over the run, lowest first; prediction and '
            f"ground truth side by side, {backdrop}; the object in question is outlined in white.</p>",
            f'<div class="frames">{"".join(cards)}</div>',
        ),
        section(
            "sequence-table",
            "Sequences",
            '<p class="note">Click a header to sort; a sequence name opens its curves. Scores ×100.</p>',
            f'<div class="scroll">{_sequence_table(results, anchors, videos)}</div>',
        ),
        section(
            "object-table",
            "Objects",
            '<p class="note">J-Mean and F-Mean as in the per-sequence CSV; recall, decay and the lowest frame '
            "from the per-frame CSV.</p>",
            f'<div class="scroll">{_object_table(results, anchors)}</div>',
        ),
        section(
            "curves",
            "Per-frame curves",
            '<p class="note">Worst sequence first. Colours are the objects\' DAVIS palette colours.</p>',
            fold_buttons("details.sequence"),
            *(_sequence_curves(results, s, anchors[s], _video_link(videos, s)) for s in by_score),
        ),
    ]
    navigation = [
        ("summary", "run"), ("worst-frames", "worst frames"), ("sequence-table", "sequences"),
        ("object-table", "objects"), ("curves", "curves"),
    ]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(html_page(title, sections, navigation), encoding="utf-8")
    return out
