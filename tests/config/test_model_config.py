"""The model config: every named config composes, every switch is validated with a clear message."""

from __future__ import annotations

import pytest

from s3.config import ConfigError, load_model_config


@pytest.mark.parametrize("name", ["s3_vitb", "cutie_base", "s3_tiny"])
def test_named_model_configs_compose_and_validate(name: str) -> None:
    cfg = load_model_config(name)
    assert cfg.name == name


def test_defaults_are_the_reference_behaviour() -> None:
    cfg = load_model_config("s3_vitb")
    assert (cfg.encoder.type, cfg.encoder.semantic, cfg.encoder.spatial) == ("s3", True, True)
    assert (cfg.query.read, cfg.query.num_queries, cfg.query.num_blocks) == ("discriminative", 8, 5)
    assert cfg.query.dq_norm_axis == "queries"
    assert cfg.encoder.drop_path_rate == 0.0
    assert (cfg.backbone.name, cfg.backbone.weights_format, cfg.backbone.pos_grid) == (
        "depth_anything_vitb14",
        "depth_anything",
        37,
    )


def test_cutie_base_is_the_cutie_recipe() -> None:
    cfg = load_model_config("cutie_base")
    assert (cfg.encoder.type, cfg.query.read, cfg.query.num_queries, cfg.query.num_blocks) == (
        "resnet50",
        "cutie",
        16,
        3,
    )


@pytest.mark.parametrize(
    "backbone, fmt, layer_scale, grid",
    [
        ("depth_anything_vits14", "depth_anything", True, 37),
        ("dinov2_vitb14", "dinov2", True, 37),
        ("mae_vitb16", "mae", False, 14),
    ],
)
def test_backbone_presets(backbone: str, fmt: str, layer_scale: bool, grid: int) -> None:
    overrides = [f"model/backbone={backbone}"]
    if backbone == "depth_anything_vits14":
        overrides.append("model.encoder.num_heads=6")
    cfg = load_model_config("s3_vitb", overrides)
    assert (cfg.backbone.weights_format, cfg.backbone.layer_scale, cfg.backbone.pos_grid) == (fmt, layer_scale, grid)


@pytest.mark.parametrize(
    "override, message",
    [
        ("model.query.read=transformer", "model.query.read='transformer' is not one of"),
        ("model.query.dq_norm_axis=heads", "model.query.dq_norm_axis='heads' is not one of"),
        ("model.query.num_queries=7", "model.query.num_queries=7 must be even"),
        ("model.query.num_heads=3", "model.query.num_heads=3 does not divide"),
        ("model.encoder.type=swin", "model.encoder.type='swin' is not one of"),
        ("model.encoder.num_heads=7", "model.encoder.num_heads=7 does not divide the ViT width 768"),
        ("model.encoder.drop_path_rate=1.5", "model.encoder.drop_path_rate must be in [0, 1)"),
        ("model.backbone.weights_format=onnx", "model.backbone.weights_format='onnx' is not one of"),
        ("model.value_dim=128", "model.value_dim=128 must equal model.embed_dim=256"),
        ("model.decoder_dims=[128,128,128]", "model.decoder_dims=[128, 128, 128] must have 3 entries"),
        ("model.pad_multiple=16", "model.pad_multiple=16 must be a multiple of 32"),
        ("+model.query.num_querys=8", "model.query.num_querys: unknown key"),
    ],
)
def test_bad_values_fail_early_naming_the_key(override: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_model_config("s3_vitb", [override])
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_semantic_and_spatial_cannot_both_be_off() -> None:
    with pytest.raises(ConfigError, match="semantic and spatial are both off"):
        load_model_config("s3_vitb", ["model.encoder.semantic=false", "model.encoder.spatial=false"])


def test_wrong_type_is_rejected() -> None:
    with pytest.raises(Exception, match="num_queries"):
        load_model_config("s3_vitb", ["model.query.num_queries=many"])
