"""Video readers, the clip dataset and its build: the trainer's sample contract and its invariants."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from PIL import Image
from torch.utils.data import DataLoader

from s3.config import CONFIG_DIR, ConfigError, to_dataclass
from s3.config.data import VIDEO_READERS, DataConfig
from s3.config.synthetic import SplitSizes, SyntheticConfig
from s3.data.build import build_train_dataset, read_video_records
from s3.data.palette import write_mask
from s3.data.synthetic import generate_dataset
from s3.data.video_folders import READERS
from s3.data.video_lists import (
    SHIPPED_LISTS_DIR,
    find_empty_frames,
    read_empty_frames,
    read_video_names,
    write_empty_frames,
)

HEIGHT, WIDTH = 48, 72
# object id -> flat RGB colour of its pixels (background black); frames are lossless PNGs
COLOURS = {0: (0, 0, 0), 1: (255, 0, 0), 2: (0, 255, 0), 3: (0, 0, 255), 4: (255, 255, 0), 7: (255, 0, 255)}


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: one thread is faster


def moving_objects(num_frames: int, object_ids: list[int]) -> np.ndarray:
    """(T, H, W) label maps: one rectangle per id, each drifting right over the clip."""
    labels = np.zeros((num_frames, HEIGHT, WIDTH), dtype=np.uint8)
    for t in range(num_frames):
        for slot, object_id in enumerate(object_ids):
            top, left = 4 + 8 * slot, 3 + 2 * t + 6 * slot
            labels[t, top : top + 14, left : left + 16] = object_id
    return labels


def write_video(image_dir: Path, mask_dir: Path, name: str, labels: np.ndarray) -> None:
    """Colour-coded PNG frames and indexed masks, frames named 00000, 00001, ..."""
    (image_dir / name).mkdir(parents=True, exist_ok=True)
    (mask_dir / name).mkdir(parents=True, exist_ok=True)
    palette = np.zeros((256, 3), dtype=np.uint8)
    for object_id, colour in COLOURS.items():
        palette[object_id] = colour
    for t, label_map in enumerate(labels):
        Image.fromarray(palette[label_map]).save(image_dir / name / f"{t:05d}.png")
        write_mask(mask_dir / name / f"{t:05d}.png", label_map)


def folder_dataset(root: Path, videos: dict[str, np.ndarray]) -> Path:
    for name, labels in videos.items():
        write_video(root / "JPEGImages", root / "Annotations", name, labels)
    return root


def data_config(**changes: Any) -> DataConfig:
    """A small, fast config: 40-pixel crops, no colour changes (so colours still encode labels)."""
    node: dict[str, Any] = {"crop_size": 40, "augmentation": {"color": False}, "paste_probability": 0.0}
    node.update(changes)
    return to_dataclass(node, DataConfig, "data")


def compose_data(mix: str, overrides: tuple[str, ...] = ()) -> DataConfig:
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(overrides=[f"+data={mix}", *overrides])
    return to_dataclass(cfg.data, DataConfig, "data")


@pytest.fixture(scope="module")
def videos_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("vos")
    return folder_dataset(root, {
        "one": moving_objects(12, [1]),
        "two": moving_objects(10, [2, 7]),
        "many": moving_objects(9, [1, 2, 3, 4, 7]),
        "short": moving_objects(5, [1]),  # fewer frames than a clip: never sampled
    })


def check_sample(sample: dict[str, Any], cfg: DataConfig) -> None:
    """The trainer's contract, item by item."""
    assert set(sample) == {"frames", "labels", "selector", "num_objects", "info"}
    frames, labels, selector, k = sample["frames"], sample["labels"], sample["selector"], sample["num_objects"]
    t, s, n = cfg.seq_length, cfg.crop_size, cfg.max_objects
    assert frames.shape == (t, 3, s, s) and frames.dtype == torch.float32
    assert 0.0 <= frames.min() and frames.max() <= 1.0
    assert labels.shape == (t, s, s) and labels.dtype == torch.int64
    assert selector.shape == (n,) and selector.dtype == torch.float32
    assert isinstance(k, int) and 1 <= k <= n
    assert selector.tolist() == [1.0] * k + [0.0] * (n - k)
    assert set(labels.unique().tolist()) <= set(range(k + 1))
    assert set(labels[0].unique().tolist()) >= set(range(1, k + 1))  # every chosen object is in frame 0
    info = sample["info"]
    assert set(info) == {"dataset", "video", "frames"} and isinstance(info["video"], str)
    assert len(info["frames"]) == t and all(isinstance(f, str) for f in info["frames"])


def frame_numbers(sample: dict[str, Any]) -> list[int]:
    return [int(f) for f in sample["info"]["frames"]]


def test_samples_follow_the_contract_and_the_sampling_invariants(videos_root: Path) -> None:
    cfg = data_config(datasets={"vids": {"root": str(videos_root), "frame_interval": 2}})
    dataset = build_train_dataset(cfg, max_skip=5, seed=0)
    assert len(dataset) == 12 + 10 + 9  # one index entry per frame; the 5-frame video is dropped
    seen_objects, seen_videos = set(), set()
    for index in range(len(dataset)):
        sample = dataset[index]
        check_sample(sample, cfg)
        numbers = frame_numbers(sample)
        assert numbers in (sorted(numbers), sorted(numbers, reverse=True))
        assert np.abs(np.diff(numbers)).max() <= 5 // 2  # curriculum skip / frame_interval
        seen_objects.add(sample["num_objects"])
        seen_videos.add(sample["info"]["video"])
    assert seen_videos == {"one", "two", "many"}
    assert 3 in seen_objects and 1 in seen_objects  # five objects are cut down to three


def test_image_and_labels_stay_aligned_through_the_dataset(videos_root: Path) -> None:
    cfg = data_config(datasets={"vids": {"root": str(videos_root)}})
    dataset = build_train_dataset(cfg, max_skip=3, seed=1)
    references = torch.tensor(list(COLOURS.values()), dtype=torch.float32) / 255.0
    for index in range(0, len(dataset), 3):
        sample = dataset[index]
        pixels = sample["frames"].permute(0, 2, 3, 1)
        distance = (pixels.unsqueeze(-2) - references).abs().amax(dim=-1)
        flat = distance.amin(dim=-1) < 0.02
        colour_ids = torch.tensor(list(COLOURS))[distance.argmin(dim=-1)]
        # relabelling is a function of the original id: each colour maps to one training label
        for object_id in COLOURS:
            new_labels = sample["labels"][flat & (colour_ids == object_id)].unique().tolist()
            assert len(new_labels) <= 1, (object_id, new_labels)
        assert sample["labels"][flat & (colour_ids == 0)].eq(0).all()


def test_items_are_a_pure_function_of_seed_epoch_and_index(videos_root: Path) -> None:
    cfg = data_config(datasets={"vids": {"root": str(videos_root)}}, paste_probability=0.5)
    dataset = build_train_dataset(cfg, max_skip=5, seed=3)
    again = build_train_dataset(cfg, max_skip=5, seed=3)
    first = dataset[4]
    assert torch.equal(first["frames"], again[4]["frames"]) and torch.equal(first["labels"], again[4]["labels"])
    dataset.set_epoch(1)
    assert not torch.equal(first["frames"], dataset[4]["frames"])
    dataset.set_epoch(0)
    assert torch.equal(first["frames"], dataset[4]["frames"])  # a resumed epoch replays its clips
    other_seed = build_train_dataset(cfg, max_skip=5, seed=4)
    assert not torch.equal(first["frames"], other_seed[4]["frames"])


def test_concat_applies_multipliers_and_forwards_set_epoch(videos_root: Path) -> None:
    cfg = data_config(datasets={
        "twice": {"root": str(videos_root), "multiplier": 2},
        "once": {"root": str(videos_root), "subset": str(write_list(videos_root / "subset.txt", ["one"]))},
    })
    dataset = build_train_dataset(cfg, max_skip=5, seed=0)
    assert len(dataset) == 2 * 31 + 12
    assert dataset[len(dataset) - 1]["info"]["dataset"] == "once"
    last = dataset[len(dataset) - 1]["frames"]
    dataset.set_epoch(5)
    assert not torch.equal(last, dataset[len(dataset) - 1]["frames"])
    batch = next(iter(DataLoader(dataset, batch_size=2, shuffle=False)))  # default collate works
    assert batch["frames"].shape == (2, 8, 3, 40, 40) and batch["num_objects"].shape == (2,)


def write_list(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(f"{line}\n" for line in lines))
    return path


def test_empty_frames_are_never_first(tmp_path: Path) -> None:
    labels = moving_objects(14, [1])
    labels[:4] = 0  # really empty, not listed: found when the clip is read
    root = folder_dataset(tmp_path / "vos", {"late": labels, "listed": moving_objects(14, [2])})
    listed = {"listed": [f"{t:05d}" for t in range(0, 14, 2)]}  # not empty, but listed as empty
    write_empty_frames(tmp_path / "empty.txt", listed)
    cfg = data_config(datasets={"v": {"root": str(root), "empty_frames": str(tmp_path / "empty.txt")}})
    dataset = build_train_dataset(cfg, max_skip=5, seed=0)
    for index in range(len(dataset)):
        sample = dataset[index]
        first = frame_numbers(sample)[0]
        if sample["info"]["video"] == "late":
            assert first >= 4
        else:
            assert first % 2 == 1


def test_void_becomes_background(tmp_path: Path) -> None:
    labels = moving_objects(9, [1])
    labels[:, 30:, :] = 255
    root = folder_dataset(tmp_path / "vos", {"void": labels})
    dataset = build_train_dataset(data_config(datasets={"v": {"root": str(root)}}), max_skip=5, seed=0)
    for index in range(len(dataset)):
        sample = dataset[index]
        assert sample["num_objects"] == 1 and sample["labels"].max() <= 1


def test_merging_pastes_objects_of_a_second_clip(videos_root: Path) -> None:
    subset = str(write_list(videos_root / "one_only.txt", ["one"]))
    counts = {}
    for probability in (0.0, 1.0):
        cfg = data_config(datasets={"v": {"root": str(videos_root), "subset": subset}}, paste_probability=probability)
        dataset = build_train_dataset(cfg, max_skip=5, seed=0)
        counts[probability] = [dataset[i]["num_objects"] for i in range(len(dataset))]
    assert set(counts[0.0]) == {1}  # the video has a single object
    assert max(counts[1.0]) == 2  # the pasted copy is a second object


def test_every_configurable_reader_exists() -> None:
    assert set(VIDEO_READERS) == set(READERS)


def test_davis_reader_uses_480p_and_the_image_set(tmp_path: Path) -> None:
    root = tmp_path / "DAVIS"
    for name in ("bear", "val-video"):
        write_video(root / "JPEGImages" / "480p", root / "Annotations" / "480p", name, moving_objects(9, [1]))
    (root / "ImageSets" / "2017").mkdir(parents=True)
    write_list(root / "ImageSets" / "2017" / "train.txt", ["bear"])
    cfg = data_config(datasets={"davis": {"reader": "davis", "root": str(root)}})
    videos = read_video_records("davis", cfg.datasets["davis"])
    assert [v.name for v in videos] == ["bear"] and len(videos[0].frames) == 9
    assert videos[0].mask_paths[0] == root / "Annotations" / "480p" / "bear" / "00000.png"


def test_only_annotated_frames_are_read(tmp_path: Path) -> None:
    root = folder_dataset(tmp_path / "vos", {"sparse": moving_objects(10, [1])})
    for t in (1, 3):
        (root / "Annotations" / "sparse" / f"{t:05d}.png").unlink()
    (videos,) = read_video_records("v", data_config(datasets={"v": {"root": str(root)}}).datasets["v"])
    assert videos.frames == ("00000", "00002", "00004", "00005", "00006", "00007", "00008", "00009")


@pytest.mark.parametrize(
    ("dataset", "message"),
    [
        ({"root": "{tmp}/nowhere"}, "data.datasets.v.root: dataset folder not found: {tmp}/nowhere"),
        ({"root": "{tmp}", "reader": "davis"}, "data.datasets.v.root: frame folder of reader 'davis' not found"),
        ({"root": "{vos}", "subset": "{tmp}/missing.txt"}, "data.datasets.v.subset: list file not found"),
        ({"root": "{vos}", "subset": "not_shipped.txt"}, "data.datasets.v.subset: list file not found"),
        ({"root": "{vos}", "subset": "{tmp}/ghost.txt"}, "data.datasets.v.subset: 1 listed videos not found"),
    ],
)
def test_bad_dataset_settings_name_the_key(tmp_path: Path, dataset: dict, message: str) -> None:
    vos = folder_dataset(tmp_path / "vos", {"a": moving_objects(9, [1])})
    write_list(tmp_path / "ghost.txt", ["a", "ghost"])
    node = {k: v.format(tmp=tmp_path, vos=vos) for k, v in dataset.items()}
    with pytest.raises(ConfigError) as error:
        build_train_dataset(data_config(datasets={"v": node}), max_skip=5, seed=0)
    assert message.format(tmp=tmp_path) in str(error.value) and "\n" not in str(error.value)


def test_bad_config_values_name_the_key() -> None:
    with pytest.raises(ConfigError, match=r"data\.datasets\.v\.reader='dvis'"):
        data_config(datasets={"v": {"root": "x", "reader": "dvis"}})
    with pytest.raises(ConfigError, match=r"data\.datasets\.v\.multipler: unknown key"):
        data_config(datasets={"v": {"root": "x", "multipler": 2}})
    with pytest.raises(ConfigError, match=r"data\.paste_probability"):
        data_config(paste_probability=1.5)
    with pytest.raises(ConfigError, match=r"data\.datasets is empty"):
        build_train_dataset(data_config(), max_skip=5, seed=0)


def test_mixes_compose_with_the_documented_datasets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("S3_DATA_ROOT", raising=False)
    expected = {  # name -> (multiplier, frame_interval)
        "davis_ytvos": {"davis": (2, 2), "youtube_vos": (1, 5)},
        "mega": {"davis": (2, 2), "youtube_vos": (1, 5), "mose": (1, 5), "burst": (1, 5), "ovis": (1, 3)},
        "mose_only": {"mose": (1, 5)},
        "synthetic": {"synthetic": (1, 1)},
    }
    for mix, datasets in expected.items():
        cfg = compose_data(mix)
        assert {k: (v.multiplier, v.frame_interval) for k, v in cfg.datasets.items()} == datasets
        assert (cfg.seq_length, cfg.max_objects, cfg.paste_probability, cfg.static.enabled) == (8, 3, 0.5, False)
        assert len(cfg.static.datasets) == 6  # a pre-training stage can switch the static sets on
    mega = compose_data("mega")
    assert mega.datasets["davis"].root == "data/DAVIS/2017/trainval"
    assert mega.datasets["davis"].subset == "davis_train.txt"
    assert mega.datasets["burst"].root == "data/BURST/train-vos"
    assert compose_data("synthetic").datasets["synthetic"].root == "data/synthetic"
    static = compose_data("static")
    assert static.static.enabled
    assert (static.static.seq_length, static.static.crop_size, static.static.max_objects) == (3, 384, 1)
    assert static.static.datasets["big"].multiplier == 5 and static.static.datasets["fss"].layout == "class_folders"
    monkeypatch.setenv("S3_DATA_ROOT", "/datasets")
    assert compose_data("mose_only").datasets["mose"].root == "/datasets/MOSE/train"
    assert compose_data("mega", ("data.root=/mnt/x",)).datasets["ovis"].root == "/mnt/x/OVIS-VOS-train"


def test_synthetic_mix_trains_on_the_generated_train_split(tmp_path: Path) -> None:
    generate_dataset(tmp_path / "synthetic", SyntheticConfig(
        num_videos=SplitSizes(train=2, val=1), num_frames=[9, 10], frame_size=[48, 64]), progress=False)
    cfg = compose_data("synthetic", (f"data.root={tmp_path}", "data.crop_size=32"))
    dataset = build_train_dataset(cfg, max_skip=5, seed=0)
    val_names = set(read_video_names(tmp_path / "synthetic" / "ImageSets" / "2017" / "val.txt"))
    for index in range(0, len(dataset), 4):
        sample = dataset[index]
        check_sample(sample, cfg)
        assert sample["info"]["video"] not in val_names


def write_image_set(folder: Path, count: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(str(folder)))
    for i in range(count):
        image = rng.integers(0, 255, size=(50, 70, 3), dtype=np.uint8)
        mask = np.zeros((50, 70), dtype=np.uint8)
        mask[10:40, 20:55] = 255
        Image.fromarray(image).save(folder / f"{i}.jpg")
        Image.fromarray(mask).save(folder / f"{i}.png")


def test_static_stage_makes_short_single_object_clips(tmp_path: Path) -> None:
    write_image_set(tmp_path / "flat", 3)
    for name in ("cat", "dog"):
        write_image_set(tmp_path / "classes" / name, 2)
    cfg = compose_data("mega", (f"data.root={tmp_path}", "data.static.crop_size=32", "data.static.enabled=true"))
    cfg.static.datasets = {
        "flat": to_dataclass({"root": str(tmp_path / "flat"), "multiplier": 2}, type(cfg.static.datasets["fss"]), "x"),
        "classes": to_dataclass({"root": str(tmp_path / "classes"), "layout": "class_folders"},
                                type(cfg.static.datasets["fss"]), "x"),
    }
    dataset = build_train_dataset(cfg, max_skip=5, seed=0)
    assert len(dataset) == 2 * 3 + 4
    for index in range(len(dataset)):
        sample = dataset[index]
        assert sample["frames"].shape == (3, 3, 32, 32) and sample["labels"].shape == (3, 32, 32)
        assert sample["selector"].tolist() == [1.0] and sample["num_objects"] == 1
        assert set(sample["labels"].unique().tolist()) <= {0, 1} and sample["labels"][0].any()
        assert set(sample["info"]) == {"dataset", "video", "frames"} and len(sample["info"]["frames"]) == 3
    assert not torch.equal(dataset[0]["labels"][1], dataset[0]["labels"][2])  # frames are warped differently


def test_static_stage_reports_a_missing_image_folder(tmp_path: Path) -> None:
    cfg = compose_data("static", (f"data.root={tmp_path}",))
    with pytest.raises(ConfigError, match=r"data\.static\.datasets\.fss\.root: image folder not found"):
        build_train_dataset(cfg, max_skip=5, seed=0)


def test_empty_frame_lists_are_found_and_round_trip(tmp_path: Path) -> None:
    labels = moving_objects(9, [1])
    labels[[0, 4]] = 0
    labels[5] = 255  # void only: nothing to train on
    root = folder_dataset(tmp_path / "vos", {"gaps": labels, "full": moving_objects(9, [2])})
    videos = read_video_records("v", data_config(datasets={"v": {"root": str(root)}}).datasets["v"])
    empty = find_empty_frames(videos, show_progress=False)
    assert empty == {"gaps": ["00000", "00004", "00005"]}
    write_empty_frames(tmp_path / "empty.txt", empty, header="test")
    assert read_empty_frames(tmp_path / "empty.txt") == {"gaps": {"00000", "00004", "00005"}}


def test_shipped_lists() -> None:
    davis = read_video_names(SHIPPED_LISTS_DIR / "davis_train.txt")
    assert len(davis) == len(set(davis)) == 60 and "bear" in davis and "blackswan" not in davis
    excluded = read_video_names(SHIPPED_LISTS_DIR / "youtube_vos_excluded.txt")
    assert len(excluded) == 7 and all(len(name) == 10 for name in excluded)
