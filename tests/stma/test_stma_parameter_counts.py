"""Parameter counts, built on the meta device (no memory allocated): ConvViT-B and ViT-B/16 against
the published checkpoints (spec 5.4), and the STMA networks, each part derived layer by layer."""

from __future__ import annotations

import pytest
import torch
from stma_helpers import PER_OBJECT, stma_config

from s3.model.group_blocks import eca_kernel_size
from s3.stma.convvit import ConvViT, PlainViT
from s3.stma.network import STMANetwork

# Published totals (spec 5.4): ConvMAE ConvViT-B encoder with its 14x14 position table, MAE ViT-B/16
# with class token and 197-row position table.
CONVMAE_CONVVITB = 84_605_824
MAE_VITB16 = 85_798_656
# The STMA networks as built here (sum of the parts derived below).
STMA_CONVVITB = 94_020_694
STMA_VITB = 97_859_734


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def conv(cin: int, cout: int, k: int, bias: bool = True, groups: int = 1) -> int:
    return cin // groups * cout * k * k + (cout if bias else 0)


def linear(cin: int, cout: int) -> int:
    return cin * cout + cout


def norm(d: int) -> int:
    return 2 * d


def conv_block(d: int) -> int:  # LN, 1x1, 5x5 depthwise, 1x1, LN, 1x1 MLP (ratio 4)
    return norm(d) + 2 * conv(d, d, 1) + conv(d, d, 5, groups=d) + norm(d) + conv(d, 4 * d, 1) + conv(4 * d, d, 1)


def vit_block(d: int) -> int:  # LN, qkv, proj, LN, MLP (ratio 4)
    return 2 * norm(d) + linear(d, 3 * d) + linear(d, d) + linear(d, 4 * d) + linear(4 * d, d)


def patch_merge(cin: int, cout: int, patch: int) -> int:
    return conv(cin, cout, patch) + norm(cout)


def basic_block(cin: int, cout: int) -> int:  # ResNet basic block, BN, 1x1 downsample when widening
    downsample = conv(cin, cout, 1, bias=False) + norm(cout) if cin != cout else 0
    return conv(cin, cout, 3, bias=False) + conv(cout, cout, 3, bias=False) + 2 * norm(cout) + downsample


def fusion_block(x_dim: int, g_dim: int, out: int) -> int:  # GroupFeatureFusionBlock
    ca_block = 2 * conv(out, out, 3) + eca_kernel_size(out)
    return conv(x_dim, out, 1) + conv(g_dim, out, 1) + 2 * ca_block


def decoder(f8: int, f4: int) -> int:  # MaskDecoder(256, 128, 128) without sensory update
    up_16_8 = conv(256, 128, 3) + conv(128, 128, 3) + conv(256, 128, 1)
    up_8_4 = 2 * conv(128, 128, 3)
    return conv(f8, 256, 1) + conv(f4, 128, 1) + up_16_8 + up_8_4 + conv(128, 1, 3)


CONVVIT_STEM = (
    patch_merge(3, 256, 4)
    + 2 * conv_block(256)
    + patch_merge(256, 384, 2)
    + 2 * conv_block(384)
    + patch_merge(384, 768, 2)
)
RESNET18_TO_LAYER3 = (
    conv(5, 64, 7, bias=False)
    + norm(64)
    + 2 * basic_block(64, 64)
    + basic_block(64, 128)
    + basic_block(128, 128)
    + basic_block(128, 256)
    + basic_block(256, 256)
)
HEAD_PARTS = {
    "object_tokenizer": linear(256, 768) + 768,  # projection + one shared embedding
    "pix_feat_proj": conv(768, 256, 1),
    "key_proj": conv(768, 256, 1) + 2 * conv(256, 64, 3) + conv(256, 1, 3),
    "mask_encoder": RESNET18_TO_LAYER3 + fusion_block(256, 256, 256),
    "pixel_fuser": fusion_block(256, 256, 256),
}


def test_convvitb_matches_the_convmae_encoder() -> None:
    with torch.device("meta"):
        backbone = ConvViT([256, 384, 768], [2, 2, 11], 12)
    stem = sum(
        count(getattr(backbone, n)) for n in ("patch_embed1", "blocks1", "patch_embed2", "blocks2", "patch_embed3")
    )
    assert stem == CONVVIT_STEM == 5_896_576
    assert count(backbone.blocks) == 11 * vit_block(768) == 77_966_592
    assert count(backbone.patch_embed4) == linear(768, 768) == 590_592
    assert count(backbone.norm) == 1_536
    position_table = 14 * 14 * 768  # ConvMAE's pos_embed; regenerated here, not a parameter
    assert position_table == 150_528
    assert count(backbone) == CONVMAE_CONVVITB - position_table == 84_455_296
    assert not list(backbone.buffers())


def test_vitb_matches_the_mae_encoder() -> None:
    with torch.device("meta"):
        backbone = PlainViT(768, 12, 12)
    class_token, position_table = 768, 197 * 768  # MAE's; dropped / regenerated here
    assert count(backbone) == conv(3, 768, 16) + 12 * vit_block(768) + norm(768)
    assert count(backbone) + class_token + position_table == MAE_VITB16


def network(name: str, *overrides: str) -> STMANetwork:
    with torch.device("meta"):
        return STMANetwork(stma_config(name, overrides))


def parts(net: STMANetwork) -> dict[str, int]:
    return {name: count(child) for name, child in net.named_children()}


def test_stma_convvitb_parts_and_total() -> None:
    expected = {"pixel_encoder": CONVMAE_CONVVITB - 150_528, **HEAD_PARTS, "mask_decoder": decoder(384, 256)}
    net = network("stma_convvitb")
    assert parts(net) == expected
    assert count(net) == sum(expected.values()) == STMA_CONVVITB
    assert all(p.requires_grad for p in net.parameters())  # the backbone is fine-tuned, nothing is frozen


def test_stma_vitb_parts_and_total() -> None:
    pyramid = 2 * (768 * 384 * 4 + 384) + norm(384) + 384 * 192 * 4 + 192  # ConvTranspose2d weights are (in, out, 2, 2)
    expected = {
        "pixel_encoder": MAE_VITB16 - 768 - 197 * 768,
        "pyramid": pyramid,
        **HEAD_PARTS,
        "mask_decoder": decoder(384, 192),
    }
    net = network("stma_vitb")
    assert parts(net) == expected
    assert count(net) == sum(expected.values()) == STMA_VITB


@pytest.mark.parametrize(
    "overrides, delta",
    [
        (["model.stml.objects=false"], -HEAD_PARTS["object_tokenizer"]),
        (["model.stml.references=false"], 0),
        (["model.stml.attention=joint"], 0),
        (["model.object_embed=slot"], 15 * 768),  # 16 slot embeddings instead of one
        (["model.key_dim=null"], -HEAD_PARTS["key_proj"]),
        (["model.reference_mask_embed=true"], conv(1, 768, 16)),
        (
            PER_OBJECT,
            conv(1, 768, 16)
            - HEAD_PARTS["object_tokenizer"]
            - HEAD_PARTS["key_proj"]
            - HEAD_PARTS["mask_encoder"]
            - HEAD_PARTS["pixel_fuser"],
        ),
    ],
)
def test_each_switch_changes_the_network_as_intended(overrides: list[str], delta: int) -> None:
    assert count(network("stma_convvitb", *overrides)) - STMA_CONVVITB == delta
