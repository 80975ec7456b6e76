"""Tiny on-disk datasets in each benchmark layout, written with PIL (a few 24x40 frames per video).

Every video shows a bright square moving right on a dark background; object ``k`` is a square
in row band ``k``. Frame names follow the benchmark (DAVIS 00000, 00001, ...; YouTube-VOS 30 fps
names with annotations every 5th).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Optional

import numpy as np
from PIL import Image

from s3.data.rle import rle_encode

HEIGHT, WIDTH = 24, 40


def frame_and_labels(t: int, object_ids: list[int], height: int = HEIGHT, width: int = WIDTH) -> tuple[np.ndarray, np.ndarray]:
    """RGB (H, W, 3) uint8 and labels (H, W) uint8 of frame ``t``."""
    image = np.full((height, width, 3), 30, np.uint8)
    labels = np.zeros((height, width), np.uint8)
    for k, obj in enumerate(object_ids):
        top = 2 + 8 * k
        left = (2 + 2 * t) % (width - 6)
        labels[top : top + 6, left : left + 6] = obj
        image[top : top + 6, left : left + 6] = (200, 60 + 40 * k, 90)
    return image, labels


def save_image(path: Path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(path, quality=95)


def save_labels(path: Path, labels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(labels, mode="L").convert("P")
    image.putpalette([v for i in range(256) for v in (i * 40 % 256, i * 80 % 256, i * 120 % 256)])
    image.save(path)


def make_folders(
    root: Path, image_dir: str, mask_dir: str, videos: dict[str, int], dense: bool, object_ids: tuple[int, ...] = (1, 2)
) -> None:
    """``root/image_dir/<video>/00000.jpg ...`` and masks in ``root/mask_dir/<video>/`` (every frame
    when ``dense``, else the first frame only)."""
    for name, frames in videos.items():
        for t in range(frames):
            image, labels = frame_and_labels(t, list(object_ids))
            save_image(root / image_dir / name / f"{t:05d}.jpg", image)
            if dense or t == 0:
                save_labels(root / mask_dir / name / f"{t:05d}.png", labels)


def make_davis(
    root: Path, videos: dict[str, int], split: str = "val", dense: bool = True, object_ids: tuple[int, ...] = (1, 2)
) -> None:
    """DAVIS layout: JPEGImages/480p/<video>, Annotations/480p/<video>, ImageSets/2017/<split>.txt."""
    make_folders(root, "JPEGImages/480p", "Annotations/480p", videos, dense, object_ids)
    (root / "ImageSets" / "2017").mkdir(parents=True, exist_ok=True)
    (root / "ImageSets" / "2017" / f"{split}.txt").write_text("".join(f"{n}\n" for n in videos))


def make_ytvos(root: Path, frames: int = 11, late_object_frame: int = 5) -> dict[str, list[str]]:
    """YouTube-VOS valid: all_frames/valid_all_frames/JPEGImages (every 30 fps frame), valid/Annotations
    (object 1 at frame 0, object 3 at ``late_object_frame``), valid/meta.json. Returns the frames
    meta.json lists per video (objects' frames, union)."""
    listed = {}
    for name in ("vid_a", "vid_b"):
        names = [f"{t:05d}" for t in range(frames)]
        for t, frame_name in enumerate(names):
            present = [1] + ([3] if t >= late_object_frame else [])
            image, labels = frame_and_labels(t, present)
            save_image(root / "all_frames" / "valid_all_frames" / "JPEGImages" / name / f"{frame_name}.jpg", image)
            if t % 5 == 0:
                save_image(root / "valid" / "JPEGImages" / name / f"{frame_name}.jpg", image)
            if t in (0, late_object_frame):
                new = 1 if t == 0 else 3
                save_labels(root / "valid" / "Annotations" / name / f"{frame_name}.png", np.where(labels == new, labels, 0))
        sparse = [n for t, n in enumerate(names) if t % 5 == 0]
        listed[name] = sparse
    meta = {
        "videos": {
            name: {
                "objects": {
                    "1": {"category": "square", "frames": frames_},
                    "3": {"category": "square", "frames": [f for f in frames_ if int(f) >= late_object_frame]},
                }
            }
            for name, frames_ in listed.items()
        }
    }
    (root / "valid" / "meta.json").write_text(json.dumps(meta))
    return listed


def make_first_appearance(
    root: Path, image_dir: str, mask_dir: str, gt_dir: str | None = None, frames: int = 8, late: int = 4
) -> None:
    """LVOS-style video ``long_a``: every frame in ``image_dir``; ``mask_dir`` holds each object's first
    appearance only (object 2 from frame 0, object 5 from ``late``); ``gt_dir`` (optional) every frame."""
    for t in range(frames):
        present = [2] + ([5] if t >= late else [])
        image, labels = frame_and_labels(t, present)
        save_image(root / image_dir / "long_a" / f"{t:05d}.jpg", image)
        if t in (0, late):
            new = 2 if t == 0 else 5
            save_labels(root / mask_dir / "long_a" / f"{t:05d}.png", np.where(labels == new, labels, 0))
        if gt_dir:
            save_labels(root / gt_dir / "long_a" / f"{t:05d}.png", labels)


def make_burst(root: Path, split: str = "val", frames: int = 7) -> dict:
    """BURST: frames/<split>/<dataset>/<seq>/, <split>/first_frame_annotations.json with track 12 from
    frame 0 and track 300 (an id above 255) from frame 2; annotated frames 0, 2, 4, 6."""
    all_paths = [f"frame{t:04d}.jpg" for t in range(frames)]
    annotated = all_paths[::2]
    segmentations = []
    for t in range(frames):
        image, labels = frame_and_labels(t, [1, 2])
        save_image(root / "frames" / split / "YFCC100M" / "seq_1" / all_paths[t], image)
        if all_paths[t] in annotated:
            tracks = {}
            if t == 0:
                tracks["12"] = {"rle": rle_encode(labels == 1)["counts"], "is_gt": True}
            if t == 2:
                tracks["300"] = {"rle": rle_encode(labels == 2)["counts"], "is_gt": True}
            segmentations.append(tracks)
    data = {
        "sequences": [
            {
                "dataset": "YFCC100M",
                "seq_name": "seq_1",
                "width": WIDTH,
                "height": HEIGHT,
                "all_image_paths": all_paths,
                "annotated_image_paths": annotated,
                "segmentations": segmentations,
                "track_category_ids": {"12": 1, "300": 2},
            }
        ]
    }
    path = root / split / "first_frame_annotations.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return data


def write_drifting_predictions(gt_dir: Path, pred_dir: Path, drift: dict[str, dict[int, int]]) -> None:
    """Predictions for every video of the ground truth ``gt_dir/<video>/*.png``: in video ``v``, object ``k``
    is moved right by ``drift[v][k] * t`` pixels at frame ``t`` (wrapping around), so its error grows along
    the video; objects and videos without an entry are exact. Objects are painted in id order."""
    for video_dir in sorted(p for p in gt_dir.iterdir() if p.is_dir()):
        shifts = drift.get(video_dir.name, {})
        for t, path in enumerate(sorted(video_dir.glob("*.png"))):
            labels = np.array(Image.open(path))
            prediction = np.zeros_like(labels)
            for object_id in np.unique(labels[labels != 0]):
                moved = np.roll(labels == object_id, shifts.get(int(object_id), 0) * t, axis=1)
                prediction[moved] = object_id
            save_labels(pred_dir / video_dir.name / path.name, prediction)


# ---------------------------------------------------------------- the HTML pages of s3.eval.report / compare, read back

VOID_ELEMENTS = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


@dataclass
class Element:
    """One HTML (or inline SVG) element: tag, attributes, its text (children's included), children."""

    tag: str
    attrs: dict[str, str]
    text: str = ""
    children: list[Element] = field(default_factory=list)

    def find_all(self, tag: str, **attrs: str) -> list[Element]:
        """Descendants with this tag and these attribute values (``class_`` for ``class``), in document order."""
        wanted = {key.rstrip("_"): value for key, value in attrs.items()}
        found = []
        for child in self.children:
            if child.tag == tag and all(child.attrs.get(k) == v for k, v in wanted.items()):
                found.append(child)
            found += child.find_all(tag, **attrs)
        return found

    def find(self, tag: str, **attrs: str) -> Optional[Element]:
        matches = self.find_all(tag, **attrs)
        return matches[0] if matches else None


class _PageParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Element("document", {})
        self.open = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, Optional[str]]]) -> None:
        element = Element(tag, {key: value or "" for key, value in attrs})
        self.open[-1].children.append(element)
        if tag not in VOID_ELEMENTS:
            self.open.append(element)

    def handle_endtag(self, tag: str) -> None:
        for depth in range(len(self.open) - 1, 0, -1):
            if self.open[depth].tag == tag:
                del self.open[depth:]
                return

    def handle_data(self, data: str) -> None:
        for element in self.open:
            element.text += data


def parse_page(text: str) -> Element:
    """The element tree of an HTML page (the root is a ``document`` element)."""
    parser = _PageParser()
    parser.feed(text)
    parser.close()
    return parser.root


def table_rows(page: Element, table_id: str) -> tuple[list[Element], list[list[Element]]]:
    """The header cells and the body rows' cells of ``<table id=table_id>``."""
    table = page.find("table", id=table_id)
    assert table is not None, f"no table with id {table_id!r}"
    headers = table.find_all("th")
    body = table.find("tbody")
    assert body is not None
    return headers, [row.find_all("td") for row in body.find_all("tr")]
