"""STMA weight files: ConvMAE, MAE and MoCo v3 checkpoints in their original layouts (synthetic
tensors with the published names, tiny shapes), checked against a forward written from the
checkpoint tensors; the ResNet-18 and whole-checkpoint keys of build_stma_network; one-line errors
that name the config key."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from stma_helpers import TINY_VIT, reference_sincos_table, stma_config
from torch import Tensor
from torchvision.models import resnet18

from s3.model.weights import CheckpointError
from s3.stma.build import build_stma_network
from s3.stma.convvit import ConvViT, PlainViT
from s3.stma.weights import load_backbone_weights

pytestmark = pytest.mark.usefixtures("one_thread")

WIDTHS, DEPTHS, HEADS = (16, 24, 32), (1, 1, 2), 2  # a ConvViT smaller than stma_tiny's
AT_TEST_WIDTHS = [  # stma_tiny with the ConvViT above, position table at ConvMAE's scale
    "model.backbone.widths=[16,24,32]",
    "model.backbone.depths=[1,1,2]",
    "model.backbone.num_heads=2",
    "model.backbone.position_scale=1.0",
]
FULL_WIDTH = "model.mask_encoder_width=64"  # ResNet-18's own trunk (stma_tiny's is narrower)
DECODER_DIM = 8
IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def random_tensors(shapes: dict[str, tuple[int, ...]], seed: int = 0) -> dict[str, Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {name: 0.2 * torch.randn(*shape, generator=g) for name, shape in shapes.items()}


def transformer_block_shapes(prefix: str, d: int) -> dict[str, tuple[int, ...]]:
    return {
        f"{prefix}.norm1.weight": (d,),
        f"{prefix}.norm1.bias": (d,),
        f"{prefix}.attn.qkv.weight": (3 * d, d),
        f"{prefix}.attn.qkv.bias": (3 * d,),
        f"{prefix}.attn.proj.weight": (d, d),
        f"{prefix}.attn.proj.bias": (d,),
        f"{prefix}.norm2.weight": (d,),
        f"{prefix}.norm2.bias": (d,),
        f"{prefix}.mlp.fc1.weight": (4 * d, d),
        f"{prefix}.mlp.fc1.bias": (4 * d,),
        f"{prefix}.mlp.fc2.weight": (d, 4 * d),
        f"{prefix}.mlp.fc2.bias": (d,),
    }


def mae_decoder_shapes(d: int, grid_tokens: int) -> dict[str, tuple[int, ...]]:
    """MAE / ConvMAE pre-training decoder entries (dropped on loading)."""
    return {
        "mask_token": (1, 1, DECODER_DIM),
        "decoder_embed.weight": (DECODER_DIM, d),
        "decoder_embed.bias": (DECODER_DIM,),
        "decoder_pos_embed": (1, grid_tokens, DECODER_DIM),
        **transformer_block_shapes("decoder_blocks.0", DECODER_DIM),
        "decoder_norm.weight": (DECODER_DIM,),
        "decoder_norm.bias": (DECODER_DIM,),
        "decoder_pred.weight": (16 * 16 * 3, DECODER_DIM),
        "decoder_pred.bias": (16 * 16 * 3,),
    }


def convmae_checkpoint() -> dict[str, Tensor]:
    """A ConvMAE pre-training checkpoint's model entries, in the published layout."""
    w4, w8, w16 = WIDTHS
    shapes: dict[str, tuple[int, ...]] = {}
    for index, (cin, cout, patch) in enumerate([(3, w4, 4), (w4, w8, 2), (w8, w16, 2)], start=1):
        shapes |= {
            f"patch_embed{index}.proj.weight": (cout, cin, patch, patch),
            f"patch_embed{index}.proj.bias": (cout,),
            f"patch_embed{index}.norm.weight": (cout,),
            f"patch_embed{index}.norm.bias": (cout,),
        }
    for stage, d in ((1, w4), (2, w8)):
        for i in range(DEPTHS[stage - 1]):
            p = f"blocks{stage}.{i}"
            shapes |= {
                f"{p}.norm1.weight": (d,),
                f"{p}.norm1.bias": (d,),
                f"{p}.conv1.weight": (d, d, 1, 1),
                f"{p}.conv1.bias": (d,),
                f"{p}.conv2.weight": (d, d, 1, 1),
                f"{p}.conv2.bias": (d,),
                f"{p}.attn.weight": (d, 1, 5, 5),
                f"{p}.attn.bias": (d,),
                f"{p}.norm2.weight": (d,),
                f"{p}.norm2.bias": (d,),
                f"{p}.mlp.fc1.weight": (4 * d, d, 1, 1),
                f"{p}.mlp.fc1.bias": (4 * d,),
                f"{p}.mlp.fc2.weight": (d, 4 * d, 1, 1),
                f"{p}.mlp.fc2.bias": (d,),
            }
    for i in range(DEPTHS[2]):
        shapes |= transformer_block_shapes(f"blocks3.{i}", w16)
    shapes |= {
        "patch_embed4.weight": (w16, w16),
        "patch_embed4.bias": (w16,),
        "norm.weight": (w16,),
        "norm.bias": (w16,),
        "stage1_output_decode.weight": (w16, w4, 4, 4),
        "stage1_output_decode.bias": (w16,),
        "stage2_output_decode.weight": (w16, w8, 2, 2),
        "stage2_output_decode.bias": (w16,),
        **mae_decoder_shapes(w16, 196),
    }
    sd = random_tensors(shapes)
    for name in ("norm.weight", "patch_embed1.norm.weight", "blocks3.0.norm1.weight", "blocks3.1.norm2.weight"):
        sd[name] = sd[name] + 1
    sd["pos_embed"] = reference_sincos_table(14, 14, w16).unsqueeze(0)  # fixed, not trained
    return sd


def vit_checkpoint(d: int = 32, depth: int = 2) -> dict[str, Tensor]:
    """An MAE ViT-B/16-layout checkpoint (tiny width): class token, 197-row table, decoder."""
    shapes: dict[str, tuple[int, ...]] = {
        "cls_token": (1, 1, d),
        "patch_embed.proj.weight": (d, 3, 16, 16),
        "patch_embed.proj.bias": (d,),
        "norm.weight": (d,),
        "norm.bias": (d,),
        **mae_decoder_shapes(d, 197),
    }
    for i in range(depth):
        shapes |= transformer_block_shapes(f"blocks.{i}", d)
    sd = random_tensors(shapes, seed=1)
    sd["pos_embed"] = torch.cat([torch.zeros(1, 1, d), reference_sincos_table(14, 14, d).unsqueeze(0)], dim=1)
    return sd


# ---------------------------------------------------------------- a forward written from the checkpoint
def channel_ln(x: Tensor, sd: dict[str, Tensor], prefix: str, eps: float) -> Tensor:
    x = x.permute(0, 2, 3, 1)
    return F.layer_norm(x, x.shape[-1:], sd[f"{prefix}.weight"], sd[f"{prefix}.bias"], eps).permute(0, 3, 1, 2)


def conv(x: Tensor, sd: dict[str, Tensor], prefix: str, **kwargs) -> Tensor:
    return F.conv2d(x, sd[f"{prefix}.weight"], sd[f"{prefix}.bias"], **kwargs)


def lin(x: Tensor, sd: dict[str, Tensor], prefix: str) -> Tensor:
    return F.linear(x, sd[f"{prefix}.weight"], sd[f"{prefix}.bias"])


def transformer_block(x: Tensor, sd: dict[str, Tensor], p: str, heads: int) -> Tensor:
    b, n, c = x.shape
    y = F.layer_norm(x, (c,), sd[f"{p}.norm1.weight"], sd[f"{p}.norm1.bias"], 1e-6)
    q, k, v = lin(y, sd, f"{p}.attn.qkv").reshape(b, n, 3, heads, c // heads).permute(2, 0, 3, 1, 4)
    attention = torch.softmax(q @ k.transpose(-2, -1) * (c // heads) ** -0.5, dim=-1)
    x = x + lin((attention @ v).transpose(1, 2).reshape(b, n, c), sd, f"{p}.attn.proj")
    y = F.layer_norm(x, (c,), sd[f"{p}.norm2.weight"], sd[f"{p}.norm2.bias"], 1e-6)
    return x + lin(F.gelu(lin(y, sd, f"{p}.mlp.fc1")), sd, f"{p}.mlp.fc2")


def convmae_reference(sd: dict[str, Tensor], image: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """ConvMAE's ConvViT forward from checkpoint tensors: f4, f8 and the normalised stride-16 tokens."""

    def merge(x: Tensor, index: int, patch: int) -> Tensor:
        x = conv(x, sd, f"patch_embed{index}.proj", stride=patch)
        return F.gelu(channel_ln(x, sd, f"patch_embed{index}.norm", 1e-5))

    def conv_block(x: Tensor, p: str) -> Tensor:
        y = conv(channel_ln(x, sd, f"{p}.norm1", 1e-5), sd, f"{p}.conv1")
        x = x + conv(conv(y, sd, f"{p}.attn", padding=2, groups=y.shape[1]), sd, f"{p}.conv2")
        y = channel_ln(x, sd, f"{p}.norm2", 1e-5)
        return x + conv(F.gelu(conv(y, sd, f"{p}.mlp.fc1")), sd, f"{p}.mlp.fc2")

    x = (image - IMAGENET_MEAN) / IMAGENET_STD
    f4 = merge(x, 1, 4)
    for i in range(DEPTHS[0]):
        f4 = conv_block(f4, f"blocks1.{i}")
    f8 = merge(f4, 2, 2)
    for i in range(DEPTHS[1]):
        f8 = conv_block(f8, f"blocks2.{i}")
    tokens = lin(merge(f8, 3, 2).flatten(2).transpose(1, 2), sd, "patch_embed4") + sd["pos_embed"]
    for i in range(DEPTHS[2]):
        tokens = transformer_block(tokens, sd, f"blocks3.{i}", HEADS)
    return f4, f8, F.layer_norm(tokens, tokens.shape[-1:], sd["norm.weight"], sd["norm.bias"], 1e-6)


def save(obj: object, path: Path) -> str:
    torch.save(obj, path)
    return str(path)


# ---------------------------------------------------------------- tests
def test_convmae_checkpoint_reproduces_the_convmae_forward(tmp_path: Path) -> None:
    sd = convmae_checkpoint()
    path = save({"model": sd}, tmp_path / "convmae_base.pth")
    net = build_stma_network(stma_config("stma_tiny", [*AT_TEST_WIDTHS, f"model.backbone.weights={path}"])).eval()
    image = torch.rand(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))  # the 14x14 pre-training grid
    with torch.no_grad():
        features = net.associate(net.encode_stem(image))
        f4, f8, tokens = convmae_reference(sd, image)
    torch.testing.assert_close(features.f4, f4, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(features.f8, f8, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(features.f16.flatten(2).transpose(1, 2), tokens, atol=1e-4, rtol=1e-4)
    assert torch.equal(net.pixel_encoder.blocks1[0].depthwise.weight, sd["blocks1.0.attn.weight"])


def test_mae_checkpoint_loads(tmp_path: Path) -> None:
    sd = vit_checkpoint()
    backbone = PlainViT(32, 2, 2)
    load_backbone_weights(backbone, save({"model": sd}, tmp_path / "mae.pth"), "mae")
    for name, tensor in backbone.state_dict().items():
        assert torch.equal(tensor, sd[name]), name
    with torch.no_grad():
        tokens = backbone.stem(torch.zeros(1, 3, 224, 224)).tokens
    bias_only = sd["patch_embed.proj.bias"] + sd["pos_embed"][0, 1:]  # a black image: the bias and the table
    torch.testing.assert_close(tokens[0], bias_only, atol=1e-5, rtol=0)


def test_mocov3_pretraining_checkpoint_loads_the_base_encoder(tmp_path: Path) -> None:
    encoder = vit_checkpoint()
    encoder = {k: v for k, v in encoder.items() if not k.startswith(("decoder", "mask_token"))}
    head = {"head.0.weight": torch.randn(64, 32), "head.1.running_mean": torch.randn(64)}  # projection MLP
    state_dict = {f"module.base_encoder.{k}": v for k, v in {**encoder, **head}.items()}
    state_dict |= {f"module.momentum_encoder.{k}": v + 1 for k, v in encoder.items()}
    state_dict["module.predictor.0.weight"] = torch.randn(64, 64)
    checkpoint = {
        "epoch": 300,
        "arch": "vit_base",
        "state_dict": state_dict,
        "optimizer": {"state": {}, "param_groups": [{"lr": 1.5e-4, "params": [0, 1]}]},
    }
    backbone = PlainViT(32, 2, 2)
    load_backbone_weights(backbone, save(checkpoint, tmp_path / "vit-b-300ep.pth.tar"), "mocov3")
    assert torch.equal(backbone.blocks[1].mlp.fc2.weight, encoder["blocks.1.mlp.fc2.weight"])
    exported = {k: v for k, v in encoder.items()}  # the DeiT-style export: plain names
    load_backbone_weights(PlainViT(32, 2, 2), save({"model": exported}, tmp_path / "deit.pth"), "mocov3")


def test_build_loads_a_vit_backbone_from_the_config(tmp_path: Path) -> None:
    path = save(vit_checkpoint(), tmp_path / "mae.pth")
    net = build_stma_network(stma_config("stma_tiny", [*TINY_VIT, f"model.backbone.weights={path}"]))
    assert torch.equal(net.pixel_encoder.norm.bias, vit_checkpoint()["norm.bias"])


def test_mask_encoder_resnet18_and_whole_checkpoint_load(tmp_path: Path) -> None:
    torch.manual_seed(0)
    r18 = resnet18(weights=None).state_dict()
    r18_path = save(r18, tmp_path / "resnet18.pth")
    net = build_stma_network(stma_config("stma_tiny", [FULL_WIDTH, f"model.mask_encoder_weights={r18_path}"]))
    assert torch.equal(net.mask_encoder.conv1.weight[:, :3], r18["conv1.weight"])
    assert torch.equal(net.mask_encoder.layer3[1].conv2.weight, r18["layer3.1.conv2.weight"])
    whole = save({"weights": net.state_dict()}, tmp_path / "stma.pth")
    torch.manual_seed(1)
    again = build_stma_network(stma_config("stma_tiny", [FULL_WIDTH, f"model.weights={whole}"]))
    for name, tensor in net.state_dict().items():
        assert torch.equal(again.state_dict()[name], tensor), name


def one_line(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert "\n" not in message
    return message


def test_missing_and_unreadable_files_name_the_key(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"^model\.backbone\.weights: file not found: .*nope\.pth$") as err:
        build_stma_network(stma_config("stma_tiny", [f"model.backbone.weights={tmp_path / 'nope.pth'}"]))
    one_line(err)
    garbage = tmp_path / "garbage.pth"
    garbage.write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match=r"^model\.mask_encoder_weights: cannot read ") as err:
        build_stma_network(stma_config("stma_tiny", [FULL_WIDTH, f"model.mask_encoder_weights={garbage}"]))
    one_line(err)
    with pytest.raises(CheckpointError, match=r"^model\.weights: file not found") as err:
        build_stma_network(stma_config("stma_tiny", [f"model.weights={tmp_path / 'none.pth'}"]))


def test_wrong_names_and_shapes_are_listed(tmp_path: Path) -> None:
    sd = convmae_checkpoint()
    del sd["blocks3.1.attn.proj.weight"]
    sd["blocks2.0.mlp.fc1.weight"] = torch.randn(7, 24, 1, 1)
    sd["blocks4.0.norm1.weight"] = torch.randn(32)
    path = save(sd, tmp_path / "convmae.pth")
    with pytest.raises(CheckpointError) as err:
        load_backbone_weights(ConvViT(WIDTHS, DEPTHS, HEADS), path, "convmae")
    message = one_line(err)
    assert message.startswith(f"model.backbone.weights ({path}, format convmae): ")
    assert "missing keys: blocks.1.attn.proj.weight" in message
    assert "unexpected keys: blocks4.0.norm1.weight" in message
    assert "shape mismatches (file vs model): blocks2.0.mlp.fc1.weight (7, 24, 1, 1) vs (96, 24, 1, 1)" in message


def test_the_wrong_layout_or_format_is_refused(tmp_path: Path) -> None:
    mae_path = save(vit_checkpoint(), tmp_path / "mae.pth")
    with pytest.raises(
        CheckpointError,
        match=r"^model\.backbone\.weights: .*mae\.pth: not a ConvMAE checkpoint: no 'patch_embed1\.\*' keys",
    ):
        load_backbone_weights(ConvViT(WIDTHS, DEPTHS, HEADS), mae_path, "convmae")
    with pytest.raises(
        CheckpointError, match=r"^model\.backbone\.weights: format mae holds a PlainViT, but the backbone is a ConvViT$"
    ):
        load_backbone_weights(ConvViT(WIDTHS, DEPTHS, HEADS), mae_path, "mae")
    momentum_only = {f"module.momentum_encoder.{k}": v for k, v in vit_checkpoint().items()}
    with pytest.raises(
        CheckpointError,
        match=r"^model\.backbone\.weights: .*: MoCo v3 checkpoint without 'module\.base_encoder\.\*' keys",
    ):
        load_backbone_weights(PlainViT(32, 2, 2), save(momentum_only, tmp_path / "moco.pth"), "mocov3")
    bad_resnet = save({"conv1.weight": torch.randn(64, 3, 7, 7)}, tmp_path / "r18.pth")
    with pytest.raises(
        CheckpointError,
        match=r"^model\.mask_encoder_weights \(.*r18\.pth\): load_resnet18_state_dict: not a compatible",
    ) as err:
        build_stma_network(stma_config("stma_tiny", [FULL_WIDTH, f"model.mask_encoder_weights={bad_resnet}"]))
    one_line(err)
