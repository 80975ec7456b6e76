"""STMA model configs: the named YAMLs compose into a validated STMAConfig, every switch is checked
early with a one-line message naming its key, and unknown keys fail."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf
from stma_helpers import PER_OBJECT, stma_config

from s3.config import ConfigError, STMAConfig, compose
from s3.config.stma import STMABackboneConfig, STMLConfig
from s3.config.structured import to_dataclass

_COMPOSED: dict[str, dict] = {}


def with_overrides(name: str, overrides: list[str]) -> STMAConfig:
    """Like ``stma_config`` for ``model.*=value`` overrides, composing each named config only once
    (Hydra composition is the slow part): the overrides are merged onto the composed node."""
    if name not in _COMPOSED:
        _COMPOSED[name] = OmegaConf.to_container(compose("model_summary", [f"model={name}"]).model)
    node = OmegaConf.merge(
        OmegaConf.create(_COMPOSED[name]), OmegaConf.from_dotlist([o.lstrip("+")[len("model.") :] for o in overrides])
    )
    return to_dataclass(node, STMAConfig, "model")


def test_the_named_configs_compose() -> None:
    paper = stma_config("stma_convvitb")
    assert (paper.arch, paper.backbone.type, paper.backbone.weights_format) == ("stma", "convvit", "convmae")
    assert (paper.backbone.widths, paper.backbone.depths, paper.backbone.num_heads) == ([256, 384, 768], [2, 2, 11], 12)
    assert (paper.stml.objects, paper.stml.references, paper.stml.attention) == (True, True, "decomposed")
    assert (paper.key_dim, paper.value_dim, paper.pad_multiple, paper.spatial_memory_size) == (64, 256, 16, 3)
    vit = stma_config("stma_vitb")
    assert (vit.backbone.type, vit.backbone.widths, vit.backbone.depths, vit.backbone.weights_format) == (
        "vit",
        [768],
        [12],
        "mae",
    )
    moco = stma_config("stma_vitb", ["model/stma_backbone=mocov3_vitb16"])
    assert moco.backbone.weights_format == "mocov3"
    tiny = stma_config("stma_tiny")
    assert (tiny.backbone.widths, tiny.backbone.depths, tiny.backbone.num_heads) == ([32, 64, 96], [1, 1, 2], 3)
    assert (tiny.key_dim, tiny.value_dim, tiny.stml.objects, tiny.stml.references) == (16, 32, True, True)


def test_the_schema_defaults_are_the_paper_model() -> None:
    assert STMAConfig() == stma_config("stma_convvitb")


@pytest.mark.parametrize(
    "override, message",
    [
        ("model.stml.attention=sparse", r"^model\.stml\.attention='sparse' is not one of \['decomposed', 'joint'\]$"),
        ("model.object_embed=learned", r"^model\.object_embed='learned' is not one of"),
        ("model.id_association=none", r"^model\.id_association='none' is not one of"),
        ("model.backbone.type=swin", r"^model\.backbone\.type='swin' is not one of"),
        ("model.backbone.weights_format=dinov2", r"^model\.backbone\.weights_format='dinov2' is not one of"),
        (
            "model.backbone.weights_format=mae",
            r"^model\.backbone\.weights_format='mae' does not fit model\.backbone\.type='convvit'",
        ),
        ("model.backbone.widths=[256,768]", r"^model\.backbone\.widths=\[256, 768\] must hold 3 positive"),
        ("model.backbone.depths=[2,0,11]", r"^model\.backbone\.depths=\[2, 0, 11\] must hold 3 positive"),
        (
            "model.backbone.num_heads=5",
            r"^model\.backbone\.widths\[-1\]=768 is not divisible by model\.backbone\.num_heads=5$",
        ),
        ("model.backbone.num_heads=0", r"^model\.backbone\.num_heads must be > 0"),
        ("model.backbone.mlp_ratio=0", r"^model\.backbone\.mlp_ratio must be > 0"),
        ("model.key_dim=0", r"^model\.key_dim must be > 0"),
        ("model.value_dim=-1", r"^model\.value_dim must be > 0"),
        ("model.pixel_dim=0", r"^model\.pixel_dim must be > 0"),
        ("model.object_slots=0", r"^model\.object_slots must be > 0"),
        ("model.spatial_memory_size=0", r"^model\.spatial_memory_size must be > 0"),
        ("model.mask_encoder_width=0", r"^model\.mask_encoder_width must be > 0"),
        (
            "model.mask_encoder_width=16 model.mask_encoder_weights=r18.pth",
            r"^model\.mask_encoder_weights: ResNet-18 weights need model\.mask_encoder_width=64, got 16$",
        ),
        ("model.pad_multiple=24", r"^model\.pad_multiple=24 must be a multiple of the network stride 16$"),
        ("model.decoder_dims=[256,128]", r"^model\.decoder_dims=\[256, 128\] must hold 3 positive widths"),
        ("model.arch=s3", r"^model\.arch='s3': the STMA schema needs 'stma'$"),
        ("+model.stml.heads=4", r"^model\.stml\.heads: unknown key"),
        ("+model.sensory_dim=4", r"^model\.sensory_dim: unknown key"),
    ],
)
def test_every_bad_value_fails_early_naming_its_key(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as err:
        with_overrides("stma_convvitb", override.split())
    assert "\n" not in str(err.value)


def test_wrongly_typed_values_name_their_key() -> None:
    with pytest.raises(ConfigError, match=r"^model\.stml\.objects: ") as err:
        to_dataclass({"stml": {"objects": "maybe"}}, STMAConfig, "model")
    assert "\n" not in str(err.value)
    with pytest.raises(Exception, match="num_heads"):
        stma_config("stma_convvitb", ["model.backbone.num_heads=many"])


def test_vit_backbones_take_vit_formats_only() -> None:
    with pytest.raises(
        ConfigError, match=r"^model\.backbone\.weights_format='convmae' does not fit model\.backbone\.type='vit'"
    ):
        with_overrides("stma_vitb", ["model.backbone.weights_format=convmae"])
    with pytest.raises(ConfigError, match=r"^model\.backbone\.widths=\[256, 384, 768\] must hold 1 positive"):
        with_overrides("stma_vitb", ["model.backbone.widths=[256,384,768]"])


@pytest.mark.parametrize(
    "overrides",
    [
        ["model.stml.objects=false"],
        ["model.stml.references=false"],
        ["model.stml.objects=false", "model.stml.references=false"],
        ["model.stml.attention=joint"],
        ["model.object_embed=slot"],
        ["model.key_dim=null"],
        ["model.reference_mask_embed=true"],
        ["model.backbone.weights=/some/file.pth"],
        PER_OBJECT,
        [*PER_OBJECT, "model.stml.attention=joint"],
    ],
)
def test_every_switch_is_accepted(overrides: list[str]) -> None:
    with_overrides("stma_convvitb", overrides)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (
            ["model.id_association=per_object", "model.reference_mask_embed=true"],
            r"^model\.stml\.objects=true needs model\.id_association=memory",
        ),
        (
            ["model.id_association=per_object", "model.stml.objects=false"],
            r"^model\.reference_mask_embed=false: model\.id_association=per_object",
        ),
        (
            [*PER_OBJECT, "model.stml.references=false"],
            r"^model\.stml\.references=false leaves model\.id_association=per_object",
        ),
        ([*PER_OBJECT, "model.pixel_dim=128"], r"^model\.pixel_dim=128 must equal model\.decoder_dims\[0\]=256"),
        ([*PER_OBJECT, "model.mask_encoder_weights=r18.pth"], r"^model\.mask_encoder_weights is set, but"),
    ],
)
def test_per_object_needs_a_consistent_configuration(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        with_overrides("stma_convvitb", overrides)


def test_nested_dataclasses_validate_on_their_own() -> None:
    with pytest.raises(ConfigError, match=r"^model\.stml\.attention="):
        STMLConfig(attention="cross").validate()
    with pytest.raises(ConfigError, match=r"^model\.backbone\.type="):
        STMABackboneConfig(type="resnet").validate()
    with pytest.raises(ConfigError, match=r"^model\.backbone\.widths\[-1\]=30 must be a multiple of 4"):
        STMABackboneConfig(widths=[16, 24, 30], num_heads=2).validate()
    with pytest.raises(ConfigError, match=r"^model\.backbone\.position_scale must be >= 0, got -1\.0$"):
        STMABackboneConfig(position_scale=-1.0).validate()


def test_the_s3_model_group_still_composes() -> None:
    from s3.config import to_model_config

    assert to_model_config(compose("model_summary", ["model=s3_tiny"]).model).name == "s3_tiny"


def test_stma_schema_rejects_an_s3_config() -> None:
    with pytest.raises(ConfigError, match=r"^model\.\w+: unknown key"):
        to_dataclass(compose("model_summary", ["model=s3_tiny"]).model, STMAConfig, "model")
