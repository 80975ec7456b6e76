"""Training data that is not what it should be names the file (or the key) in one line, and the mix
draws paste partners like the authors' code: from every dataset, not only the clip's own."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_vos_dataset import data_config, folder_dataset, moving_objects

from s3.config.validation import ConfigError, InputError
from s3.data.build import build_train_dataset, read_video_records
from s3.data.frames import FrameFileError, list_frames
from s3.data.palette import MaskFileError, write_mask
from s3.data.vos_dataset import VOSClipDataset


def test_paste_partners_come_from_the_whole_mix(tmp_path: Path) -> None:
    a = folder_dataset(tmp_path / "a", {"one": moving_objects(9, [1])})
    b = folder_dataset(tmp_path / "b", {"other": moving_objects(9, [2])})
    cfg = data_config(datasets={"a": {"root": str(a)}, "b": {"root": str(b), "multiplier": 3}}, paste_probability=1.0)
    mix = build_train_dataset(cfg, max_skip=5, seed=0)
    loads: list[tuple[str, str]] = []
    for part in mix.datasets:
        original = part.load_clip

        def recording(frame_index: int, rng: np.random.Generator, original=original, name=part.name):
            clip = original(frame_index, rng)
            loads.append((name, clip.dataset))
            return clip

        part.load_clip = recording
    for index in range(9):  # the items of dataset a: its clip, then a partner
        mix[index]
    partners = [dataset for _, dataset in loads[1::2]]
    assert "b" in partners  # b holds 27 of the mix's 36 clip seeds
    assert all(sample == "a" for sample, _ in loads[0::2])


def test_frames_sort_by_number_not_by_text(tmp_path: Path) -> None:
    labels = moving_objects(12, [1])
    for t, label_map in enumerate(labels):
        (tmp_path / "vos" / "JPEGImages" / "v").mkdir(parents=True, exist_ok=True)
        (tmp_path / "vos" / "Annotations" / "v").mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.stack([label_map * 100] * 3, -1)).save(tmp_path / "vos" / "JPEGImages" / "v" / f"{t}.png")
        write_mask(tmp_path / "vos" / "Annotations" / "v" / f"{t}.png", label_map)
    assert [p.stem for p in list_frames(tmp_path / "vos" / "JPEGImages" / "v")] == [str(t) for t in range(12)]
    (video,) = read_video_records("v", data_config(datasets={"v": {"root": str(tmp_path / "vos")}}).datasets["v"])
    assert video.frames == tuple(str(t) for t in range(12))  # text order would put 10 and 11 after 1
    (tmp_path / "vos" / "JPEGImages" / "v" / "3.jpg").write_bytes(b"")
    with pytest.raises(FrameFileError, match=r"v: frame 3 has more than one image file"):
        list_frames(tmp_path / "vos" / "JPEGImages" / "v")


def one_video_dataset(root: Path) -> VOSClipDataset:
    (dataset,) = build_train_dataset(data_config(datasets={"v": {"root": str(root)}}), max_skip=5, seed=0).datasets
    return dataset


def test_a_mask_of_another_size_than_its_frame_names_the_file(tmp_path: Path) -> None:
    root = folder_dataset(tmp_path / "vos", {"v": moving_objects(9, [1])})
    mask = root / "Annotations" / "v" / "00000.png"
    write_mask(mask, np.ones((10, 10), np.uint8))
    with pytest.raises(MaskFileError, match=r"00000.png: mask size 10x10 differs from its frame"):
        one_video_dataset(root).load_clip(0, np.random.default_rng(0))


def test_truncated_frames_and_masks_name_the_file(tmp_path: Path) -> None:
    root = folder_dataset(tmp_path / "vos", {"v": moving_objects(9, [1])})
    frame = root / "JPEGImages" / "v" / "00000.png"
    frame.write_bytes(frame.read_bytes()[:60])
    with pytest.raises(FrameFileError, match=r"00000.png: not a readable image"):
        one_video_dataset(root).load_clip(0, np.random.default_rng(0))


def test_empty_masks_and_image_sets_are_input_errors(tmp_path: Path) -> None:
    root = folder_dataset(tmp_path / "vos", {"v": np.zeros((9, 30, 40), np.uint8)})
    with pytest.raises(InputError, match=r"no clip with an object .* data.datasets.v \(.*vos/Annotations\): are the"):
        one_video_dataset(root)[0]
    (tmp_path / "static").mkdir()
    cfg = data_config(static={"enabled": True, "datasets": {"duts": {"root": str(tmp_path / "static")}}})
    with pytest.raises(ConfigError, match=r"^data.static.datasets.duts.root: no <name>.jpg \+ <name>.png pairs"):
        build_train_dataset(cfg, max_skip=5, seed=0)
