"""The evaluation presets where the authors' evaluation differs from Cutie's defaults: long-term
memory sizes, LVOS and BURST sizes, the generic preset's native size, the "+" mask folder, the
authors' release switch, void labels and the object grouping."""

from __future__ import annotations

import pytest

from s3.config import compose
from s3.config.eval import EvalConfig, to_eval_config
from s3.config.inference import LongTermConfig
from s3.config.validation import ConfigError


def eval_config(*overrides: str) -> EvalConfig:
    return to_eval_config(compose("eval", ["model=s3_tiny", *overrides]))


def test_long_videos_use_the_authors_long_term_memory() -> None:
    for preset in ("lvos_val", "lvos_test", "burst_val", "burst_test", "generic"):
        extra = ["dataset.image_dir=f", "dataset.mask_dir=m"] if preset == "generic" else []
        inference = eval_config(f"dataset={preset}", *extra).inference_config()
        assert inference.use_long_term, preset
        assert inference.long_term == LongTermConfig(
            max_mem_frames=25, min_mem_frames=15, num_prototypes=128, max_num_tokens=30000, buffer_tokens=3000
        ), preset


@pytest.mark.parametrize(
    ("preset", "standard", "plus"),
    [
        ("lvos_val", 600, 600),  # the paper's LVOS numbers are equal at 480 and 600/720: one run, at 600
        ("lvos_test", 600, 600),
        ("burst_val", 600, 600),  # the authors' "+" config leaves BURST at its 600
        ("burst_test", 600, 600),
        ("generic", -1, -1),  # the authors' generic preset keeps the native size
        ("davis17", 480, 720),
        ("ytvos19", 480, 600),
        ("mose", 480, 720),
    ],
)
def test_processing_sizes_follow_the_authors(preset: str, standard: int, plus: int) -> None:
    extra = ["dataset.image_dir=f", "dataset.mask_dir=m"] if preset == "generic" else []
    assert eval_config(f"dataset={preset}", *extra).protocol().size == standard
    assert eval_config(f"dataset={preset}", "plus=true", *extra).protocol().size == plus


def test_plus_reads_the_full_resolution_masks_of_davis() -> None:
    for preset, folder in (("davis17", "Annotations/Full-Resolution"), ("davis17_test", "Annotations/Full-Resolution"),
                           ("davis16", "2016/Annotations/Full-Resolution")):
        assert eval_config(f"dataset={preset}", "plus=true").protocol().mask_dir == folder
        assert eval_config(f"dataset={preset}").protocol().mask_dir.endswith("480p")
    assert eval_config("dataset=davis17", "plus=true", "mask_dir=elsewhere").protocol().mask_dir == "elsewhere"


def test_release_turns_on_the_authors_flip_averaging() -> None:
    assert not eval_config("dataset=davis17").inference_config().flip_aug  # the paper's protocol: off
    release = eval_config("dataset=davis17", "release=true").inference_config()
    assert release.flip_aug and (release.mem_every, release.max_internal_size) == (5, 480)  # protocol untouched


def test_objects_are_grouped_as_the_authors_by_default() -> None:
    assert eval_config("dataset=davis17").inference_config().object_groups == "bucket"
    assert eval_config("dataset=davis17", "inference.object_groups=all").inference_config().object_groups == "all"
    with pytest.raises(ConfigError, match=r"inference.object_groups='pairs' is not one of"):
        eval_config("dataset=davis17", "inference.object_groups=pairs")


def test_void_is_not_an_object_where_255_is_void() -> None:
    assert eval_config("dataset=davis17").dataset.void_label == 255
    assert eval_config("dataset=mose").dataset.void_label == 255
    for preset in ("davis16", "lvos_val", "burst_val"):  # 255 is an object id there
        assert eval_config(f"dataset={preset}").dataset.void_label is None
    with pytest.raises(ConfigError, match=r"^dataset.void_label=255: score_mode=vos_benchmark"):
        eval_config("dataset=davis16", "dataset.void_label=255")

