"""Parameter counts: the reference targets for s3_vitb, and the exact delta of every switch."""

from __future__ import annotations

import pytest
import torch

from s3.config import load_model_config
from s3.model.network import S3Network

# Counted on the reference implementation (the authors' code) with the same configuration.
S3_VITB_TRAINABLE = 54_042_142
VIT_B_FROZEN = 86_718_720
DQ_READ = 132_352  # per block
CUTIE_READ = 263_680  # per block
QUERY_BLOCK = 2_890_757
AUX_HEAD = 257  # ReLU + 1x1 conv 256 -> 1
SEMANTIC_ATTENTION = 2_363_904  # per spatial-semantic block
EXTRACTOR_UNIT = 1_594_320


def counts(*overrides: str, name: str = "s3_vitb") -> tuple[int, int, S3Network]:
    with torch.device("meta"):
        net = S3Network(load_model_config(name, overrides))
    trainable = sum(p.numel() for p in net.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in net.parameters() if not p.requires_grad)
    return trainable, frozen, net


@pytest.fixture(scope="module")
def base() -> tuple[int, int]:
    trainable, frozen, _ = counts()
    return trainable, frozen


def test_s3_vitb_matches_the_reference_counts(base: tuple[int, int]) -> None:
    trainable, frozen = base
    assert abs(trainable - S3_VITB_TRAINABLE) <= 0.005 * S3_VITB_TRAINABLE
    assert trainable == S3_VITB_TRAINABLE  # in fact exact
    assert frozen == VIT_B_FROZEN


def test_per_module_counts_match_the_reference() -> None:
    _, _, net = counts()
    expected = {
        "pixel_encoder": 22_179_360 + VIT_B_FROZEN,
        "pix_feat_proj": 196_864,
        "key_proj": 494_209,
        "mask_encoder": 8_820_682,
        "mask_decoder": 4_738_945,
        "pixel_fuser": 2_558_218,
        "object_transformer": 14_722_591,
        "object_summarizer": 265_224,
        "aux_computer": 66_049,
    }
    got = {name: sum(p.numel() for p in m.parameters()) for name, m in net.named_children()}
    assert got == expected


@pytest.mark.parametrize(
    "override, trainable_delta",
    [
        ("model.query.read=cutie", 5 * (CUTIE_READ - DQ_READ)),
        ("model.query.num_queries=16", 2 * 8 * 256 + 8 * 256 + 8),  # 2 embedding tables + summary weights
        ("model.query.num_queries=32", 2 * 24 * 256 + 24 * 256 + 24),
        ("model.query.num_blocks=3", -2 * (QUERY_BLOCK + AUX_HEAD)),
        ("model.query.dq_norm_axis=channels", 0),
        ("model.encoder.semantic=false", -4 * SEMANTIC_ATTENTION),
        ("model.encoder.spatial=false", -6 * EXTRACTOR_UNIT),
        ("model.encoder.extra_units_last_block=0", -2 * EXTRACTOR_UNIT),
        ("model.encoder.drop_path_rate=0.15", 0),
    ],
)
def test_each_switch_changes_the_network_as_intended(
    base: tuple[int, int], override: str, trainable_delta: int
) -> None:
    trainable, frozen, _ = counts(override)
    assert (trainable - base[0], frozen - base[1]) == (trainable_delta, 0)


def test_vitdet_fpn_replaces_the_adapter_and_keeps_the_frozen_vit(base: tuple[int, int]) -> None:
    trainable, frozen, net = counts("model.encoder.type=vitdet_fpn")
    assert frozen == VIT_B_FROZEN
    assert not hasattr(net.pixel_encoder, "spatial_prior") and not hasattr(net.pixel_encoder, "blocks")
    adapter = 22_179_360
    fpn = sum(p.numel() for p in net.pixel_encoder.parameters() if p.requires_grad)
    # pix_feat_proj, key_proj.feat_proj and the two decoder skips now read 256 channels, not 768
    narrower_inputs = (768 - 256) * (256 + 256 + 256 + 128)
    assert trainable == base[0] - adapter + fpn - narrower_inputs


def test_resnet50_encoder_has_no_frozen_vit() -> None:
    trainable, frozen, net = counts("model.encoder.type=resnet50")
    assert frozen == 0 and not hasattr(net.pixel_encoder, "vit")
    assert sum(p.numel() for p in net.pixel_encoder.parameters()) == 8_543_296  # ResNet-50 up to layer3


def test_cutie_base_recipe() -> None:
    _, frozen, net = counts(name="cutie_base")
    assert frozen == 0
    assert len(net.object_transformer.blocks) == 3
    assert net.object_transformer.query_init.weight.shape == (16, 256)


@pytest.mark.parametrize(
    "backbone, extra, frozen_expected",
    [
        ("mae_vitb16", [], VIT_B_FROZEN - 1370 * 768 + 197 * 768 - 24 * 768),  # 14x14 table, no LayerScale
        ("dinov2_vitb14", [], VIT_B_FROZEN),
        ("depth_anything_vits14", ["model.encoder.num_heads=6"], 22_125_696),  # ViT-S with a 16x16 kernel
    ],
)
def test_backbone_switch(backbone: str, extra: list[str], frozen_expected: int) -> None:
    _, frozen, _ = counts(f"model/backbone={backbone}", *extra)
    assert frozen == frozen_expected
