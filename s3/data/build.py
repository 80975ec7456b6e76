"""Build the training dataset from a validated ``DataConfig``: the video mix or the static stage.

Missing folders and list files are reported here, when the datasets are built, as one-line
``ConfigError`` messages naming the key (``data.datasets.<name>.root``) and the path.
"""

from __future__ import annotations

from pathlib import Path

from torch.utils.data import ConcatDataset, Dataset

from s3.config.data import DataConfig, VideoDatasetConfig
from s3.config.validation import ConfigError
from s3.data.static_dataset import StaticClipDataset, list_image_pairs
from s3.data.video_folders import READERS, VideoRecord
from s3.data.video_lists import read_empty_frames, read_video_names, resolve_list_path
from s3.data.vos_dataset import VOSClipDataset


class EpochConcatDataset(ConcatDataset):
    """``ConcatDataset`` whose ``set_epoch`` reaches every part."""

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose clips every part returns."""
        for dataset in self.datasets:
            dataset.set_epoch(epoch)


def _existing_dir(path: Path, key: str, what: str) -> Path:
    if not path.is_dir():
        raise ConfigError(f"{key}: {what} not found: {path}")
    return path


def read_video_records(name: str, cfg: VideoDatasetConfig) -> list[VideoRecord]:
    """The videos of one configured dataset after its subset and exclusion lists."""
    key = f"data.datasets.{name}"
    reader = READERS[cfg.reader](_existing_dir(Path(cfg.root).expanduser(), f"{key}.root", "dataset folder"))
    _existing_dir(reader.image_dir, f"{key}.root", f"frame folder of reader '{cfg.reader}'")
    _existing_dir(reader.mask_dir, f"{key}.root", f"mask folder of reader '{cfg.reader}'")
    available = reader.video_names()
    if cfg.subset is not None:
        names = read_video_names(resolve_list_path(cfg.subset, f"{key}.subset"))
    elif reader.default_subset() is not None:
        default = reader.default_subset()
        if not default.is_file():
            raise ConfigError(f"{key}.subset: not set and the reader's default list is missing: {default}")
        names = read_video_names(default)
    else:
        names = available
    missing = sorted(set(names) - set(available))
    if missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise ConfigError(f"{key}.subset: {len(missing)} listed videos not found under {reader.mask_dir}: {shown}")
    if cfg.exclude is not None:
        excluded = set(read_video_names(resolve_list_path(cfg.exclude, f"{key}.exclude")))
        names = [n for n in names if n not in excluded]
    return [reader.read_video(n) for n in names]


def build_video_dataset(name: str, cfg: DataConfig, max_skip: int, seed: int) -> VOSClipDataset:
    """The clip dataset of ``cfg.datasets[name]`` at curriculum max skip ``max_skip``."""
    dataset_cfg = cfg.datasets[name]
    empty = None
    if dataset_cfg.empty_frames is not None:
        empty = read_empty_frames(resolve_list_path(dataset_cfg.empty_frames, f"data.datasets.{name}.empty_frames"))
    videos = read_video_records(name, dataset_cfg)
    if not any(len(v.frames) >= cfg.seq_length for v in videos):
        raise ConfigError(
            f"data.datasets.{name}.root: no video with at least data.seq_length={cfg.seq_length} "
            f"annotated frames in {dataset_cfg.root}"
        )
    return VOSClipDataset(
        name,
        videos,
        cfg,
        frame_interval=dataset_cfg.frame_interval,
        multiplier=dataset_cfg.multiplier,
        max_skip=max_skip,
        seed=seed,
        empty_frames=empty,
    )


def build_static_dataset(cfg: DataConfig, seed: int) -> EpochConcatDataset:
    """The static-image pre-training dataset (every image set of ``data.static.datasets``)."""
    static = cfg.static
    if not static.datasets:
        raise ConfigError("data.static.datasets is empty: no image set for the static pre-training stage")
    parts = []
    for name, image_cfg in static.datasets.items():
        key = f"data.static.datasets.{name}.root"
        root = _existing_dir(Path(image_cfg.root).expanduser(), key, "image folder")
        pairs = list_image_pairs(root, image_cfg.layout)
        if not pairs:
            raise ConfigError(f"{key}: no <name>.jpg + <name>.png pairs in {root} (layout {image_cfg.layout})")
        parts.append(StaticClipDataset(
            name, pairs,
            multiplier=image_cfg.multiplier, seq_length=static.seq_length, crop_size=static.crop_size,
            max_objects=static.max_objects, fill=list(cfg.augmentation.fill), seed=seed,
        ))
    return EpochConcatDataset(parts)


def build_train_dataset(cfg: DataConfig, max_skip: int, seed: int) -> Dataset:
    """The training dataset described by ``cfg``; ``set_epoch(epoch)`` selects the epoch's clips.

    Video mix (default): the concatenation of ``data.datasets`` (those named in ``data.use_datasets``
    when set), each ``multiplier`` x its frames,
    clips of ``data.seq_length`` frames at curriculum max skip ``max_skip`` (dense-frame units),
    paste partners drawn from the whole mix.
    ``data.static.enabled``: the static-image pre-training clips instead, sized by ``data.static``
    (``max_skip`` unused).
    Items are the sample dicts of ``s3.data.vos_dataset.to_training_sample``, a pure function of
    (seed, epoch, index).
    """
    if cfg.static.enabled:
        return build_static_dataset(cfg, seed)
    if not cfg.datasets:
        raise ConfigError("data.datasets is empty: no video dataset to train on")
    if max_skip < 1:
        raise ValueError(f"max_skip must be >= 1, got {max_skip}")
    names = cfg.datasets if cfg.use_datasets is None else cfg.use_datasets
    parts = [build_video_dataset(name, cfg, max_skip, seed) for name in names]
    for part in parts:
        part.mix = parts  # paste partners and restarts come from the whole mix
    return EpochConcatDataset(parts)
