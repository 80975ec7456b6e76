"""Every evaluation preset on a tiny dataset in its layout: protocol values, the frames processed,
the masks fed, the frames written, and the submission (zip layout / BURST JSON) or local scores."""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import pytest
from PIL import Image
from s3.run.evaluate import RunFolderError, run_evaluation
from tiny_datasets import (
    HEIGHT,
    WIDTH,
    frame_and_labels,
    make_burst,
    make_davis,
    make_first_appearance,
    make_folders,
    make_ytvos,
    save_image,
    save_labels,
)

from s3.config import compose
from s3.config.eval import EvalConfig, to_eval_config
from s3.config.validation import ConfigError
from s3.data.palette import read_mask
from s3.data.rle import rle_decode
from s3.eval.datasets import DatasetError, list_videos
from s3.eval.ensemble import merge_frame

DAVIS_FRAMES = {"bear": 4, "cows": 3}
ALL_DAVIS = {v: [f"{t:05d}" for t in range(n)] for v, n in DAVIS_FRAMES.items()}
FIRST_DAVIS = {v: ["00000"] for v in DAVIS_FRAMES}


@dataclass
class Expected:
    """What a preset must do on its tiny dataset."""

    overrides: list[str]
    processed: dict[str, list[str]]  # video -> frame names processed
    fed: dict[str, list[str]]  # video -> frames whose mask is fed
    written: dict[str, list[str]]  # video -> frames written
    zip_entries: Optional[list[str]] = None  # sorted archive names; None: no archive
    scored: bool = False
    burst: bool = False
    protocol: dict[str, object] = field(default_factory=dict)


def davis17(root: Path, tmp: Path) -> Expected:
    make_davis(root, DAVIS_FRAMES, dense=True)
    return Expected([], ALL_DAVIS, FIRST_DAVIS, ALL_DAVIS, scored=True,
                    protocol={"size": 480, "mem_every": 5, "use_all_masks": False})


def davis16(root: Path, tmp: Path) -> Expected:
    make_folders(root, "2016/JPEGImages/480p", "2016/Annotations/480p", DAVIS_FRAMES, dense=True, object_ids=(255,))
    subset = root / "2017" / "trainval" / "ImageSets" / "2016" / "val.txt"
    subset.parent.mkdir(parents=True)
    subset.write_text("bear\ncows\n")
    return Expected([], ALL_DAVIS, FIRST_DAVIS, ALL_DAVIS, scored=True)


def davis17_test(root: Path, tmp: Path) -> Expected:
    make_davis(root, DAVIS_FRAMES, split="test-dev", dense=False)
    entries = sorted(f"{v}/{f}.png" for v, frames in ALL_DAVIS.items() for f in frames)
    return Expected([], ALL_DAVIS, FIRST_DAVIS, ALL_DAVIS, zip_entries=entries)


def mose(root: Path, tmp: Path) -> Expected:
    make_folders(root, "valid/JPEGImages", "valid/Annotations", DAVIS_FRAMES, dense=False)
    entries = sorted(f"{v}/{f}.png" for v, frames in ALL_DAVIS.items() for f in frames)
    return Expected([], ALL_DAVIS, FIRST_DAVIS, ALL_DAVIS, zip_entries=entries)


def ytvos(root: Path, tmp: Path) -> Expected:
    listed = make_ytvos(root, frames=11, late_object_frame=5)
    processed = {v: [f"{t:05d}" for t in range(11)] for v in listed}
    entries = sorted(f"Annotations/{v}/{f}.png" for v, frames in listed.items() for f in frames)
    return Expected([], processed, {v: ["00000", "00005"] for v in listed}, listed, zip_entries=entries,
                    protocol={"use_all_masks": True, "save_all": False})


def lvos_val(root: Path, tmp: Path) -> Expected:
    make_first_appearance(root, "valid/JPEGImages", "valid/Annotations_first_only", gt_dir="valid/Annotations")
    frames = {"long_a": [f"{t:05d}" for t in range(8)]}
    return Expected([], frames, {"long_a": ["00000", "00004"]}, frames, scored=True,
                    protocol={"use_long_term": True, "use_all_masks": True})


def lvos_test(root: Path, tmp: Path) -> Expected:
    make_first_appearance(root, "test/JPEGImages", "test/Annotations")
    frames = {"long_a": [f"{t:05d}" for t in range(8)]}
    entries = [f"Annotations/long_a/{f}.png" for f in frames["long_a"]]
    return Expected([], frames, {"long_a": ["00000", "00004"]}, frames, zip_entries=entries)


def burst(split: str) -> Callable[[Path, Path], Expected]:
    def setup(root: Path, tmp: Path) -> Expected:
        make_burst(root, split)
        name = "YFCC100M_-_seq_1"
        frames = [f"frame{t:04d}" for t in range(7)]
        return Expected([], {name: frames}, {name: ["frame0000", "frame0002"]}, {name: frames[::2]}, burst=True,
                        protocol={"size": 600, "mem_every": 10, "use_long_term": True})

    return setup


def generic(root: Path, tmp: Path) -> Expected:
    make_folders(tmp / "user", "frames", "masks", {"clip": 5}, dense=False)
    frames = {"clip": [f"{t:05d}" for t in range(5)]}
    overrides = [f"dataset.image_dir={tmp / 'user' / 'frames'}", f"dataset.mask_dir={tmp / 'user' / 'masks'}"]
    return Expected(overrides, frames, {"clip": ["00000"]}, frames)


def synthetic(root: Path, tmp: Path) -> Expected:
    make_davis(root, DAVIS_FRAMES, dense=True)
    return Expected([], ALL_DAVIS, FIRST_DAVIS, ALL_DAVIS, scored=True)


PRESETS: dict[str, Callable[[Path, Path], Expected]] = {
    "davis16": davis16,
    "davis17": davis17,
    "davis17_test": davis17_test,
    "ytvos18": ytvos,
    "ytvos19": ytvos,
    "mose": mose,
    "lvos_val": lvos_val,
    "lvos_test": lvos_test,
    "burst_val": burst("val"),
    "burst_test": burst("test"),
    "generic": generic,
    "synthetic": synthetic,
}


def test_every_preset_file_is_covered() -> None:
    files = {p.stem for p in (Path(__file__).resolve().parents[2] / "configs" / "dataset").glob("*.yaml")}
    assert files == set(PRESETS)


def eval_config(name: str, root: Path, out: Path, extra: list[str] = ()) -> EvalConfig:
    cfg = compose("eval", [f"dataset={name}", "model=s3_tiny", f"dataset.root={root}", f"output_dir={out}",
                           "progress=false", *extra])
    return to_eval_config(cfg)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_preset_frames_and_outputs(name: str, tmp_path: Path, network) -> None:
    root, out = tmp_path / "data", tmp_path / "run"
    expected = PRESETS[name](root, tmp_path)
    cfg = eval_config(name, root, out, expected.overrides)
    protocol = cfg.protocol()
    for key, value in expected.protocol.items():
        assert getattr(protocol, key) == value, key

    videos = list_videos(cfg.dataset, protocol)
    assert {v.name: v.frame_names for v in videos} == expected.processed
    assert {v.name: sorted({*v.mask_files, *v.burst_masks}) for v in videos} == expected.fed
    assert {v.name: [f for f in v.frame_names if v.saves(f)] for v in videos} == expected.written

    report = run_evaluation(cfg, network, network.cfg, out)
    assert report.videos_run == len(videos) and report.frames == sum(len(v) for v in expected.processed.values())
    assert report.model_fps > 0 and report.end_to_end_fps > 0 and report.peak_memory_mib > 0

    if expected.burst:
        check_burst_predictions(out / "predictions.json", root / name.split("_")[1] / "first_frame_annotations.json")
    else:
        for video, frames in expected.written.items():
            written = sorted(p.stem for p in (out / "Annotations" / video).glob("*.png"))
            assert written == frames, video
            with Image.open(out / "Annotations" / video / f"{frames[0]}.png") as png:
                assert png.mode == "P" and png.size == (WIDTH, HEIGHT)  # original resolution
            first = read_mask(out / "Annotations" / video / f"{expected.fed[video][0]}.png")
            given = (root / cfg.dataset.mask_dir / video / f"{expected.fed[video][0]}.png")
            if given.is_file():
                assert np.array_equal(first, read_mask(given))  # the fed mask comes back unchanged

    archives = sorted(out.glob("*.zip"))
    if expected.zip_entries is None:
        assert not archives
    else:
        assert [a.name for a in archives] == [f"s3_{name}.zip"]
        with zipfile.ZipFile(archives[0]) as archive:
            assert sorted(archive.namelist()) == expected.zip_entries
    assert (report.scores is not None) == expected.scored
    if expected.scored:
        assert (out / f"global_results-{name}.csv").is_file() and "J&F-Mean" in report.scores


def check_burst_predictions(predictions_path: Path, input_path: Path) -> None:
    predictions = json.loads(predictions_path.read_text())
    given = json.loads(input_path.read_text())
    (seq,) = predictions["sequences"]
    assert seq["annotated_image_paths"] == given["sequences"][0]["annotated_image_paths"]
    assert len(seq["segmentations"]) == 4
    first, second = seq["segmentations"][0], seq["segmentations"][1]
    _, labels0 = frame_and_labels(0, [1, 2])
    decoded = rle_decode({"size": [HEIGHT, WIDTH], "counts": first["12"]["rle"]})
    assert np.array_equal(decoded, labels0 == 1)  # the given track comes back on its first frame
    _, labels2 = frame_and_labels(2, [1, 2])
    decoded = rle_decode({"size": [HEIGHT, WIDTH], "counts": second["300"]["rle"]})
    assert np.array_equal(decoded, labels2 == 2)  # track ids above 255 survive


def test_plus_setting_and_global_overrides(tmp_path: Path) -> None:
    standard = eval_config("davis17", tmp_path, tmp_path / "o").protocol()
    assert (standard.size, standard.mem_every, standard.max_mem_frames) == (480, 5, 5)
    plus = eval_config("davis17", tmp_path, tmp_path / "o", ["plus=true"]).protocol()
    assert (plus.size, plus.mem_every, plus.max_mem_frames, plus.image_dir) == (720, 3, 10, "JPEGImages/Full-Resolution")
    assert eval_config("ytvos19", tmp_path, tmp_path / "o", ["plus=true"]).protocol().size == 600
    overridden = eval_config("davis17", tmp_path, tmp_path / "o", ["plus=true", "mem_every=7"]).protocol()
    assert (overridden.size, overridden.mem_every) == (720, 7)  # only the set global wins
    inference = eval_config("burst_val", tmp_path, tmp_path / "o", ["inference.flip_aug=true"]).inference_config()
    assert (inference.max_internal_size, inference.mem_every, inference.use_long_term, inference.flip_aug) == (
        600, 10, True, True)


def test_feeding_ground_truth_is_refused(tmp_path: Path, network) -> None:
    with pytest.raises(ConfigError, match="fully annotated ground truth"):
        eval_config("davis17", tmp_path, tmp_path / "o", ["use_all_masks=true"])
    with pytest.raises(ConfigError, match="fully annotated ground truth"):
        eval_config("synthetic", tmp_path, tmp_path / "o", ["dataset.use_all_masks=true"])
    # a folder of unknown kind is checked as it is read: a repeated object id means ground truth
    make_folders(tmp_path / "user", "frames", "masks", {"clip": 4}, dense=True)
    cfg = eval_config("generic", tmp_path, tmp_path / "o", [f"dataset.image_dir={tmp_path / 'user/frames'}",
                                                           f"dataset.mask_dir={tmp_path / 'user/masks'}",
                                                           "use_all_masks=true"])
    with pytest.raises(DatasetError, match="00001.png: objects \\[1, 2\\] were already given"):
        run_evaluation(cfg, network, network.cfg, tmp_path / "o")


def test_missing_and_bad_keys_name_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="dataset.image_dir"):
        eval_config("generic", tmp_path, tmp_path / "o")
    with pytest.raises(ConfigError, match="dataset.layout"):
        eval_config("davis17", tmp_path, tmp_path / "o", ["dataset.layout=kitti"])
    with pytest.raises(ConfigError, match="inference.chunk_size"):
        eval_config("davis17", tmp_path, tmp_path / "o", ["inference.chunk_size=0"])
    with pytest.raises(ConfigError, match="unknown key"):
        eval_config("davis17", tmp_path, tmp_path / "o", ["+dataset.sise=3"])
    with pytest.raises(DatasetError, match="val.txt: subset file not found"):
        cfg = eval_config("davis17", tmp_path / "nowhere", tmp_path / "o")
        list_videos(cfg.dataset, cfg.protocol())


def test_resume_skips_finished_videos_and_refuses_other_settings(tmp_path: Path, network) -> None:
    root, out = tmp_path / "data", tmp_path / "run"
    make_davis(root, DAVIS_FRAMES)
    first = run_evaluation(eval_config("synthetic", root, out, ["score=false"]), network, network.cfg, out)
    assert (first.videos_run, first.videos_skipped) == (2, 0)
    (out / "progress" / "cows.done").unlink()  # as if interrupted during "cows"
    again = run_evaluation(eval_config("synthetic", root, out, ["score=false"]), network, network.cfg, out)
    assert (again.videos_run, again.videos_skipped) == (1, 1)
    with pytest.raises(RunFolderError, match="run_settings.json: .*other settings \\(inference, protocol differ\\)"):
        run_evaluation(eval_config("synthetic", root, out, ["mem_every=3"]), network, network.cfg, out)
    fresh = run_evaluation(eval_config("synthetic", root, out, ["mem_every=3", "resume=false"]), network, network.cfg, out)
    assert (fresh.videos_run, fresh.videos_skipped) == (2, 0)


def test_merge_matches_objects_by_id_not_by_channel() -> None:
    a = np.zeros((3, 1, 3), np.uint8)
    a[:, 0, 0] = (255, 0, 0)  # background
    a[:, 0, 1] = (0, 200, 55)  # object 4 (channel 1)
    a[:, 0, 2] = (0, 60, 195)  # object 9 (channel 2)
    b = np.stack([a[0], a[2], a[1]])  # the same scores, channels in the other order
    assert merge_frame([(a, [4, 9]), (b, [9, 4])]).tolist() == [[0, 4, 9]]
    c = np.zeros((2, 1, 3), np.uint8)  # a run that only found object 7
    c[0], c[1] = 155, 100
    c[:, 0, 1] = (0, 255)
    assert merge_frame([(a, [4, 9]), (c, [7])]).tolist() == [[0, 7, 9]]


def test_plus_reads_full_resolution_frames_and_masks_and_writes_at_480p_size(tmp_path: Path, network) -> None:
    """As the authors' code: the "+" setting feeds the Full-Resolution first-frame mask (here object 1
    only, to tell it from the 480p mask with objects 1 and 2), never an upscaled 480p one."""
    root, out = tmp_path / "data", tmp_path / "run"
    make_davis(root, {"bear": 3})
    for t in range(3):  # Full-Resolution frames at twice the 480p size
        image, _ = frame_and_labels(t, [1, 2], height=2 * HEIGHT, width=2 * WIDTH)
        save_image(root / "JPEGImages" / "Full-Resolution" / "bear" / f"{t:05d}.jpg", image)
    _, labels = frame_and_labels(0, [1, 2])
    full_resolution = np.kron(np.where(labels == 1, labels, 0), np.ones((2, 2), np.uint8))
    save_labels(root / "Annotations" / "Full-Resolution" / "bear" / "00000.png", full_resolution)
    cfg = eval_config("davis17", root, out, ["plus=true", "score=false"])
    (video,) = list_videos(cfg.dataset, cfg.protocol())
    assert video.frames[0].parent.name == "bear" and "Full-Resolution" in str(video.frames[0])
    assert video.mask_files["00000"] == root / "Annotations" / "Full-Resolution" / "bear" / "00000.png"
    assert video.output_size == (HEIGHT, WIDTH)
    run_evaluation(cfg, network, network.cfg, out)
    first = read_mask(out / "Annotations" / "bear" / "00000.png")
    assert first.shape == (HEIGHT, WIDTH)
    assert np.array_equal(first, np.where(labels == 1, labels, 0))
