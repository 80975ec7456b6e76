"""The data configs: every video mix exposes the clip augmentation as keys, with the schema's defaults."""

from __future__ import annotations

import dataclasses

import pytest

from s3.config import compose
from s3.config.data import AugmentationConfig
from s3.config.train import to_train_config
from s3.train.trainer import stage_data_config


@pytest.mark.parametrize("mix", ["davis_ytvos", "mega", "mose_only", "synthetic", "bl30k"])
def test_every_video_mix_exposes_the_augmentation_with_the_schema_defaults(mix: str) -> None:
    composed = compose("train", [f"data={mix}"])
    data = stage_data_config(composed.data, to_train_config(composed.train).stages[-1])
    assert data.augmentation == AugmentationConfig()  # configs/data/augmentation/cutie.yaml == the schema
    assert set(composed.data.augmentation.keys()) == {f.name for f in dataclasses.fields(AugmentationConfig)}

    changed = compose("train", [f"data={mix}", "data.augmentation.crop_scale=[0.2,0.5]"])  # no "+" needed
    stage = to_train_config(changed.train).stages[-1]
    assert stage_data_config(changed.data, stage).augmentation.crop_scale == [0.2, 0.5]
