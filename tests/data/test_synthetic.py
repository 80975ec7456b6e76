"""The synthetic VOS generator: determinism, exact layouts, and the difficulty it promises."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from s3.config import ConfigError, compose
from s3.config.jobs import to_make_synthetic_config
from s3.config.synthetic import SplitSizes, SyntheticConfig
from s3.data.palette import read_mask
from s3.data.synthetic import (
    SHAPES,
    VideoPlan,
    generate_dataset,
    plan_video,
    prepare_root,
    render_plan,
    render_video,
    video_seed,
)


def small_config(**overrides: object) -> SyntheticConfig:
    """Small, short videos with every feature switched on often."""
    values: dict[str, object] = dict(
        num_videos=SplitSizes(train=2, val=3),
        num_frames=[10, 12],
        frame_size=[72, 120],
        num_objects=[2, 4],
        leave_prob=0.5,
        late_prob=0.6,
        lookalike_prob=1.0,
    )
    values.update(overrides)
    return SyntheticConfig(**values)  # type: ignore[arg-type]


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def visible_counts(labels: np.ndarray, label: int) -> np.ndarray:
    return np.count_nonzero(labels == label, axis=(1, 2))


# ----------------------------------------------------------------------------------------------------
# Determinism


def test_render_video_is_deterministic_and_depends_on_the_seed() -> None:
    cfg = small_config()
    first, again, other = render_video(7, cfg), render_video(7, cfg), render_video(8, cfg)
    assert np.array_equal(first.frames, again.frames) and np.array_equal(first.labels, again.labels)
    assert first.appear_frames == again.appear_frames
    assert first.frames.shape != other.frames.shape or not np.array_equal(first.frames, other.frames)


@pytest.mark.parametrize("layout", ["davis", "ytvos"])
def test_generation_is_byte_identical_for_a_seed_and_differs_for_another(tmp_path: Path, layout: str) -> None:
    cfg = small_config(layout=layout, num_videos=SplitSizes(train=2, val=2))
    generate_dataset(tmp_path / "a", cfg, progress=False)
    generate_dataset(tmp_path / "b", cfg, progress=False)
    generate_dataset(tmp_path / "c", dataclasses.replace(cfg, seed=1), progress=False)
    a, b, c = (tree_bytes(tmp_path / name) for name in "abc")
    assert len(a) > 20 and a == b
    images = [name for name in a if name.endswith((".jpg", ".png"))]
    assert any(a[name] != c.get(name) for name in images)


def test_a_videos_content_does_not_depend_on_the_other_splits_size() -> None:
    small, large = small_config(), small_config(num_videos=SplitSizes(train=50, val=3))
    seed_small, seed_large = video_seed(small, "val", 1), video_seed(large, "val", 1)
    assert seed_small == seed_large
    assert video_seed(small, "train", 1) != seed_small


# ----------------------------------------------------------------------------------------------------
# Layouts


def test_davis_layout_matches_the_rendered_videos(tmp_path: Path) -> None:
    cfg = small_config(layout="davis")
    generate_dataset(tmp_path, cfg, progress=False)
    for split, count in (("train", 2), ("val", 3)):
        names = (tmp_path / "ImageSets" / "2017" / f"{split}.txt").read_text().split()
        assert names == [f"{split}_{i:04d}" for i in range(count)]
        for index, name in enumerate(names):
            plan = plan_video(video_seed(cfg, split, index), cfg)
            video = render_plan(plan)
            jpgs = sorted((tmp_path / "JPEGImages" / "480p" / name).iterdir())
            pngs = sorted((tmp_path / "Annotations" / "480p" / name).iterdir())
            assert [p.name for p in jpgs] == [f"{i:05d}.jpg" for i in range(len(video.frames))]
            assert [p.name for p in pngs] == [f"{i:05d}.png" for i in range(len(video.frames))]
            for frame, jpg, labels, png in zip(video.frames, jpgs, video.labels, pngs):
                decoded = np.asarray(Image.open(jpg).convert("RGB"), dtype=np.float32)
                assert decoded.shape == (72, 120, 3)
                assert np.abs(decoded - frame).mean() < 6  # the JPEG is this frame
                with Image.open(png) as image:
                    assert image.mode == "P"
                assert np.array_equal(read_mask(png), labels)  # exact ids, no smoothing
            ids = set(plan.categories)
            assert ids == set(range(1, len(ids) + 1))
            assert set(np.unique(video.labels)) <= ids | {0}
            assert set(np.unique(video.labels[0])) == ids | {0}  # DAVIS: every object in frame 0
    assert json.loads((tmp_path / "synthetic.json").read_text())["config"]["layout"] == "davis"


def test_ytvos_layout_meta_and_first_appearance_annotations(tmp_path: Path) -> None:
    cfg = small_config(layout="ytvos", late_prob=1.0)
    generate_dataset(tmp_path, cfg, progress=False)
    assert not (tmp_path / "ImageSets").exists()
    for split, folder, count in (("train", "train", 2), ("val", "valid", 3)):
        meta = json.loads((tmp_path / folder / "meta.json").read_text())["videos"]
        assert sorted(meta) == [f"{split}_{i:04d}" for i in range(count)]
        for index, name in enumerate(sorted(meta)):
            plan = plan_video(video_seed(cfg, split, index), cfg)
            video = render_plan(plan)
            frame_names = [f"{5 * i:05d}" for i in range(len(video.frames))]
            jpgs = sorted(p.stem for p in (tmp_path / folder / "JPEGImages" / name).iterdir())
            assert jpgs == frame_names
            objects = meta[name]["objects"]
            assert {int(k) for k in objects} == set(video.appear_frames) == set(plan.categories)
            assert all(objects[str(k)]["category"] == c and c in SHAPES for k, c in plan.categories.items())
            annotations = tmp_path / folder / "Annotations" / name
            if split == "train":
                assert sorted(p.stem for p in annotations.iterdir()) == frame_names
                for label, entry in objects.items():
                    present = [frame_names[f] for f in np.flatnonzero(visible_counts(video.labels, int(label)))]
                    assert entry["frames"] == present
                for f, stem in enumerate(frame_names):
                    assert np.array_equal(read_mask(annotations / f"{stem}.png"), video.labels[f])
            else:
                starts = sorted(set(video.appear_frames.values()))
                assert sorted(p.stem for p in annotations.iterdir()) == [frame_names[f] for f in starts]
                for f in starts:
                    mask = read_mask(annotations / f"{frame_names[f]}.png")
                    starting = {k for k, first in video.appear_frames.items() if first == f}
                    assert set(np.unique(mask)) - {0} == starting
                    expected = np.where(np.isin(video.labels[f], list(starting)), video.labels[f], 0)
                    assert np.array_equal(mask, expected)
                for label, entry in objects.items():
                    assert entry["frames"] == frame_names[video.appear_frames[int(label)] :]
                full = tmp_path / folder / "Annotations_all" / name
                assert all(
                    np.array_equal(read_mask(full / f"{stem}.png"), video.labels[f])
                    for f, stem in enumerate(frame_names)
                )


@pytest.mark.parametrize("size", [(480, 854), (61, 97)])
def test_any_frame_size(size: tuple[int, int]) -> None:
    video = render_video(3, small_config(frame_size=list(size), num_frames=[8, 8]))
    assert video.frames.shape == (8, *size, 3) and video.frames.dtype == np.uint8
    assert video.labels.shape == (8, *size) and video.labels.dtype == np.uint8


# ----------------------------------------------------------------------------------------------------
# Difficulty and visibility promises


def test_copying_the_first_mask_fails_on_default_validation_videos() -> None:
    cfg = SyntheticConfig()
    last_ious, copy_ious = [], []
    for index in range(10):
        video = render_video(video_seed(cfg, "val", index), cfg)
        for label, first in video.appear_frames.items():
            first_mask = video.labels[first] == label
            last_ious.append(iou(first_mask, video.labels[-1] == label))
            copy_ious.append(np.mean([iou(first_mask, m == label) for m in video.labels[first + 1 :]]))
    assert len(last_ious) >= 15
    assert np.mean(last_ious) < 0.15
    assert np.mean(copy_ious) < 0.4


def test_every_object_shows_well_where_it_is_first_annotated_and_not_before() -> None:
    cfg = small_config(layout="ytvos", late_prob=1.0)
    late_seen = 0
    for seed in range(12):
        plan = plan_video(seed, cfg)
        video = render_plan(plan)
        for obj in plan.objects:
            if not obj.label:
                continue
            visible = visible_counts(video.labels, obj.label)
            assert video.appear_frames[obj.label] == obj.first_frame
            assert not visible[: obj.first_frame].any()
            assert visible[obj.first_frame] >= 0.5 * obj.pixel_area(obj.first_frame)
            late_seen += obj.first_frame > 0
        assert plan.objects[0].first_frame == 0  # object 1 is there from the start
    assert late_seen >= 5


def test_davis_videos_have_no_late_objects() -> None:
    cfg = small_config(layout="davis", late_prob=1.0)
    for seed in range(6):
        assert set(render_video(seed, cfg).appear_frames.values()) == {0}


def test_leaving_objects_vanish_mid_video_and_come_back() -> None:
    cfg = small_config(leave_prob=1.0)
    for seed in range(8):
        plan = plan_video(seed, cfg)
        video = render_plan(plan)
        leaving = [obj for obj in plan.objects if obj.leaves]
        assert leaving and all(obj.label for obj in leaving)
        for obj in leaving:
            visible = visible_counts(video.labels, obj.label)
            absent = np.flatnonzero(visible[1:-1] == 0) + 1
            assert len(absent), f"seed {seed}: object {obj.label} never leaves"
            assert visible[absent[0] + 1 :].max() >= 0.5 * obj.pixel_area(int(np.argmax(visible[absent[0] + 1 :])))


def alone(plan: VideoPlan, index: int) -> np.ndarray:
    """Where object ``index`` of ``plan`` (a distractor too) is drawn without the others, per frame."""
    drawn = dataclasses.replace(plan.objects[index], label=255)
    return render_plan(dataclasses.replace(plan, objects=(drawn,))).labels > 0


def test_objects_occlude_each_other_in_both_depth_orders() -> None:
    cfg = small_config(num_objects=[2, 2], occlusion_prob=1.0, leave_prob=0.0, lookalike_prob=0.0)
    occluded_objects, videos_with_occlusion = set(), 0
    for seed in range(10):
        plan = plan_video(seed, cfg)
        labels = render_plan(plan).labels
        hidden = [np.logical_and(alone(plan, i), labels != obj.label).any() for i, obj in enumerate(plan.objects)]
        videos_with_occlusion += any(hidden)
        occluded_objects.update(obj.label for obj, h in zip(plan.objects, hidden) if h)
    assert videos_with_occlusion >= 7
    assert occluded_objects == {1, 2}  # each of the two gets hidden behind the other in some video


def test_lookalike_distractors_are_drawn_but_never_labelled() -> None:
    cfg = small_config(lookalike_prob=1.0)
    for seed in range(4):
        plan = plan_video(seed, cfg)
        distractors = [i for i, obj in enumerate(plan.objects) if obj.label == 0]
        assert len(distractors) == 1
        drawn = alone(plan, distractors[0])
        video = render_plan(plan)
        assert drawn.any()
        assert set(np.unique(video.labels)) <= set(plan.categories) | {0}


def test_objects_move_scale_and_rotate() -> None:
    cfg = SyntheticConfig()
    shifts, scale_spans, turns = [], [], []
    height, width = cfg.frame_size
    for index in range(8):
        for obj in plan_video(video_seed(cfg, "val", index), cfg).objects:
            shifts.append(np.hypot(*(obj.centres[-1] - obj.centres[0])) / np.hypot(height, width))
            scale_spans.append(obj.scales.max() / obj.scales.min())
            turns.append(abs(np.rad2deg(obj.angles[-1] - obj.angles[0])))
    assert min(shifts) > 0.05 and np.mean(shifts) > 0.2
    assert np.mean(scale_spans) > 1.4 and max(scale_spans) <= 1.6 / 0.6 + 1e-6
    assert np.mean(turns) > 45 and max(turns) <= 180 + 1e-6


# ----------------------------------------------------------------------------------------------------
# Output folder handling and config


def test_prepare_root_refuses_a_different_dataset_unless_told(tmp_path: Path) -> None:
    cfg = small_config(num_videos=SplitSizes(train=1, val=1))
    assert prepare_root(tmp_path / "new", cfg)
    generate_dataset(tmp_path, cfg, progress=False)
    (tmp_path / "notes.txt").write_text("keep me")
    assert not prepare_root(tmp_path, cfg)  # this exact dataset is already there
    with pytest.raises(FileExistsError, match=re.escape(f"{tmp_path}: holds a synthetic dataset made with another config")):
        prepare_root(tmp_path, dataclasses.replace(cfg, seed=5))
    assert prepare_root(tmp_path, dataclasses.replace(cfg, seed=5), overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
    with pytest.raises(FileExistsError, match="not empty and not a finished synthetic dataset"):
        prepare_root(tmp_path, cfg)


def test_yaml_and_schema_defaults_agree() -> None:
    assert to_make_synthetic_config(compose("make_synthetic")).synthetic == SyntheticConfig()
    cfg = to_make_synthetic_config(
        compose("make_synthetic", ["layout=ytvos", "num_videos.train=3", "frame_size=[480,854]"])
    ).synthetic
    assert (cfg.layout, cfg.num_videos.train, cfg.frame_size) == ("ytvos", 3, [480, 854])


@pytest.mark.parametrize(
    "override, message",
    [
        ("layout=kitti", "layout='kitti' is not one of ['davis', 'ytvos']"),
        ("num_frames=[20,10]", "num_frames=[20, 10] must satisfy 8 <= min <= max"),
        ("num_objects=[0,2]", "num_objects=[0, 2] must satisfy 1 <= min <= max <= 255"),
        ("frame_size=[16,64]", "frame_size must be [H, W] with both >= 32, got [16, 64]"),
        ("leave_prob=1.5", "leave_prob must be in [0, 1], got 1.5"),
        ("num_videos.val=-1", "num_videos.val must be >= 0, got -1"),
        ("deformation=0.9", "deformation must be in [0, 0.5], got 0.9"),
        ("seed=-1", "seed must be >= 0, got -1"),
    ],
)
def test_bad_values_name_their_key(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        to_make_synthetic_config(compose("make_synthetic", [override]))
