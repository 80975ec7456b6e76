"""The spatial-semantic pixel encoder and the ViTDet-FPN baseline, on a tiny frozen ViT."""

from __future__ import annotations

import pytest
import torch

from s3.model.backbone.vit import FrozenViT
from s3.model.encoder import MultiScaleDeformableAttention, S3Encoder, ViTDetFPNEncoder

TINY_DIM = 48


def tiny_vit() -> FrozenViT:
    return FrozenViT(embed_dim=TINY_DIM, depth=4, num_heads=4, patch_size=16, pos_grid=4)


def tiny_encoder(**switches: bool) -> S3Encoder:
    torch.manual_seed(0)
    return S3Encoder(tiny_vit(), prior_width=8, deform_heads=4, deform_points=2, **switches)


def _trainable(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


@pytest.mark.parametrize("height, width", [(64, 96), (96, 128)])
def test_output_shapes(height: int, width: int) -> None:
    encoder = tiny_encoder().eval()
    with torch.no_grad():
        f16, f8, f4 = encoder(torch.randn(2, 3, height, width))
    assert encoder.out_channels == (TINY_DIM,) * 3
    assert f16.shape == (2, TINY_DIM, height // 16, width // 16)
    assert f8.shape == (2, TINY_DIM, height // 8, width // 8)
    assert f4.shape == (2, TINY_DIM, height // 4, width // 4)


def test_one_encoder_serves_several_input_sizes() -> None:
    encoder = tiny_encoder().eval()
    image = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        before = encoder(image)
        encoder(torch.randn(1, 3, 96, 128))
        after = encoder(image)
    for a, b in zip(before, after):
        assert torch.equal(a, b)


@pytest.mark.parametrize("encoder_cls", [S3Encoder, ViTDetFPNEncoder])
def test_rejects_size_not_multiple_of_32(encoder_cls: type) -> None:
    encoder = encoder_cls(tiny_vit())
    with pytest.raises(ValueError, match=r"input HxW=64x80 must be a multiple of 32; pad it first"):
        encoder(torch.randn(1, 3, 64, 80))


def test_gradients_reach_every_adapter_parameter_but_not_the_vit() -> None:
    encoder = tiny_encoder().train()
    # The zero-initialised offset / point-weight projections block the gradient to the deformable
    # queries (query_norm) at initialisation; nudge them as one optimiser step would.
    with torch.no_grad():
        for module in encoder.modules():
            if isinstance(module, MultiScaleDeformableAttention):
                module.offset_proj.weight.normal_(std=0.01)
                module.point_weight_proj.weight.normal_(std=0.01)
    assert not encoder.vit.training
    vit_outputs: list[torch.Tensor] = []
    for module in [encoder.vit.patch_embed.proj, *encoder.vit.blocks]:
        module.register_forward_hook(lambda m, args, out: vit_outputs.append(out))

    outputs = encoder(torch.randn(2, 3, 64, 96))
    generator = torch.Generator().manual_seed(1)
    loss = sum((out * torch.randn(out.shape, generator=generator)).sum() for out in outputs)
    loss.backward()

    assert len(vit_outputs) == 1 + encoder.vit.depth
    assert all(out.grad_fn is None and not out.requires_grad for out in vit_outputs)
    for name, parameter in encoder.vit.named_parameters():
        assert not parameter.requires_grad and parameter.grad is None, f"ViT parameter {name} is trainable"
    trainable = [(n, p) for n, p in encoder.named_parameters() if not n.startswith("vit.")]
    assert trainable
    for name, parameter in trainable:
        assert parameter.requires_grad, name
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, f"no gradient for {name}"


def test_ablation_switches_run() -> None:
    image = torch.randn(1, 3, 64, 64)
    full = tiny_encoder()
    for switches in ({"semantic": False}, {"spatial": False}, {"add_vit_features": False}):
        encoder = tiny_encoder(**switches).eval()
        with torch.no_grad():
            shapes = [tuple(f.shape) for f in encoder(image)]
        assert shapes == [(1, TINY_DIM, 4, 4), (1, TINY_DIM, 8, 8), (1, TINY_DIM, 16, 16)], switches
    assert _trainable(tiny_encoder(add_vit_features=False)) == _trainable(full)


def test_vit_b_adapter_parameter_count() -> None:
    """As counted on the reference implementation: the trainable adapter of the ViT-B configuration has 22,179,360 parameters."""
    with torch.device("meta"):
        encoder = S3Encoder(FrozenViT(embed_dim=768, depth=12, num_heads=12, patch_size=16, pos_grid=37))
    assert _trainable(encoder) == 22_179_360
    assert _trainable(encoder.vit) == 0
    assert _trainable(encoder.spatial_prior) == 791_616
    assert _trainable(encoder.blocks) == 19_021_536
    assert _trainable(encoder.up) == 2_360_064
    assert encoder.level_embed.numel() == 1_536
    assert sum(_trainable(getattr(encoder, f"norm_s{s}")) for s in (4, 8, 16)) == 4_608
    assert [len(block.units) for block in encoder.blocks] == [1, 1, 1, 3]


def test_initialisation_follows_spec() -> None:
    encoder = tiny_encoder()
    unit = encoder.blocks[0].units[0]
    assert torch.count_nonzero(unit.deform_attn.offset_proj.weight) == 0
    assert torch.count_nonzero(unit.deform_attn.point_weight_proj.weight) == 0
    linear_weights = torch.cat([block.units[0].ffn.fc1.weight.flatten() for block in encoder.blocks])
    assert torch.count_nonzero(unit.ffn.fc1.bias) == 0 and 0.017 < linear_weights.std() < 0.023
    assert torch.count_nonzero(encoder.blocks[0].semantic_attn.attn.out_proj.bias) == 0
    assert torch.equal(unit.query_norm.weight, torch.ones(TINY_DIM))
    assert torch.count_nonzero(encoder.spatial_prior.fc1.bias) == 0
    assert torch.count_nonzero(encoder.up.bias) == 0
    fan_out = 2 * 2 * TINY_DIM
    assert 0.95 < encoder.up.weight.std() / (2 / fan_out) ** 0.5 < 1.05
    assert 0.7 < encoder.level_embed.std() < 1.3


def test_vitdet_fpn_shapes_and_frozen_vit() -> None:
    torch.manual_seed(0)
    encoder = ViTDetFPNEncoder(tiny_vit(), out_dim=32)
    assert encoder.out_channels == (32, 32, 32)
    f16, f8, f4 = encoder(torch.randn(2, 3, 64, 96))
    assert f16.shape == (2, 32, 4, 6) and f8.shape == (2, 32, 8, 12) and f4.shape == (2, 32, 16, 24)
    sum(f.sum() for f in (f16, f8, f4)).backward()
    assert all(p.grad is None for p in encoder.vit.parameters())
    assert all(p.grad is not None for n, p in encoder.named_parameters() if not n.startswith("vit."))
