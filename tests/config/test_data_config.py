"""The data configs: every video mix exposes the clip augmentation as keys, with the schema's defaults."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest

from s3.config import CONFIG_DIR, compose
from s3.config.data import AugmentationConfig
from s3.config.train import to_train_config
from s3.train.trainer import stage_data_config


@pytest.mark.parametrize("mix", ["davis_ytvos", "mega", "mose_only", "synthetic", "bl30k"])
def test_every_video_mix_exposes_the_augmentation_with_the_schema_defaults(mix: str) -> None:
    composed = compose("train", [f"data={mix}"])
    data = stage_data_config(composed.data, to_train_config(composed.train).stages[-1])
    assert data.augmentation == AugmentationConfig()  # the stored schema, no YAML copy of its values
    assert set(composed.data.augmentation.keys()) == {f.name for f in dataclasses.fields(AugmentationConfig)}

    changed = compose("train", [f"data={mix}", "data.augmentation.crop_scale=[0.2,0.5]"])  # no "+" needed
    stage = to_train_config(changed.train).stages[-1]
    assert stage_data_config(changed.data, stage).augmentation.crop_scale == [0.2, 0.5]


def test_scripts_that_compose_a_data_mix_register_the_schemas() -> None:
    # data mixes name the stored AugmentationConfig; a script composing one must register it first
    script = CONFIG_DIR.parent / "scripts" / "make_lists.py"
    result = subprocess.run([sys.executable, str(script), "--cfg", "job"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "crop_scale:" in result.stdout
