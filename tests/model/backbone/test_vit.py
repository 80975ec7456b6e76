"""The frozen ViT: exact parameter count, frozen semantics, positional-table resizing."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from s3.model.backbone.vit import FrozenViT


def tiny_vit(**kwargs) -> FrozenViT:
    args = dict(embed_dim=48, depth=4, num_heads=4, patch_size=16, pos_grid=4)
    args.update(kwargs)
    return FrozenViT(**args)


def test_vit_b_has_the_reference_frozen_parameter_count() -> None:
    vit = FrozenViT()  # ViT-B/16, 37x37 table, LayerScale
    assert sum(p.numel() for p in vit.parameters()) == 86_718_720
    assert vit.pos_embed.shape == (1, 1370, 768)
    assert vit.patch_embed.proj.weight.shape == (768, 3, 16, 16)


def test_vit_is_frozen_stays_in_eval_and_keeps_no_graph() -> None:
    vit = tiny_vit()
    assert not any(p.requires_grad for p in vit.parameters())
    vit.train()
    assert not vit.training and not any(m.training for m in vit.modules())
    image = torch.randn(2, 3, 64, 96, requires_grad=True)
    tokens = vit.prepare_tokens(image)
    out = vit.forward_blocks(tokens, 0, vit.depth)
    assert tokens.shape == out.shape == (2, 1 + 4 * 6, 48)
    assert tokens.grad_fn is None and out.grad_fn is None and not out.requires_grad


def test_block_groups_split_the_depth_evenly() -> None:
    assert FrozenViT(depth=12).group_bounds(4) == [(0, 3), (3, 6), (6, 9), (9, 12)]
    vit = tiny_vit()
    blocks = vit.group_bounds(2)
    tokens = vit.prepare_tokens(torch.randn(1, 3, 32, 32))
    staged = vit.forward_blocks(vit.forward_blocks(tokens, *blocks[0]), *blocks[1])
    torch.testing.assert_close(staged, vit.forward_blocks(tokens, 0, 4))


def test_position_table_is_kept_at_its_native_grid_and_resized_bicubically_otherwise() -> None:
    vit = tiny_vit()
    torch.nn.init.normal_(vit.pos_embed)
    assert torch.equal(vit.resized_pos_embed(4, 4), vit.pos_embed)
    resized = vit.resized_pos_embed(3, 5)
    assert resized.shape == (1, 1 + 15, 48)
    assert torch.equal(resized[:, 0], vit.pos_embed[:, 0])  # the CLS row is untouched
    grid = vit.pos_embed[:, 1:].reshape(1, 4, 4, 48).permute(0, 3, 1, 2)
    expected = F.interpolate(grid, scale_factor=(3.1 / 4, 5.1 / 4), mode="bicubic", align_corners=False)
    torch.testing.assert_close(resized[:, 1:], expected.flatten(2).transpose(1, 2))


def test_tokens_are_cls_then_row_major_patches_with_position_added() -> None:
    vit = tiny_vit()
    image = torch.randn(1, 3, 32, 48)
    tokens = vit.prepare_tokens(image)
    patches = F.conv2d(image, vit.patch_embed.proj.weight, vit.patch_embed.proj.bias, stride=16)
    expected = torch.cat([vit.cls_token, patches.flatten(2).transpose(1, 2)], dim=1) + vit.resized_pos_embed(2, 3)
    torch.testing.assert_close(tokens, expected)


def test_mae_style_vit_has_no_layer_scale() -> None:
    vit = FrozenViT(pos_grid=14, layer_scale=False)
    names = [n for n, _ in vit.named_parameters()]
    assert not any(".ls1." in n or ".ls2." in n for n in names)
    assert vit.pos_embed.shape == (1, 197, 768)


def test_reduced_precision_attention_on_the_cpu_is_the_same_attention() -> None:
    """The head-by-head bf16 path computes softmax(q k^T / sqrt(d)) v as timm's fused one does."""
    torch.manual_seed(0)
    vit = tiny_vit()
    attention = vit.blocks[0].attn
    x = torch.randn(2, 7, 48)
    with torch.no_grad():
        for parameter in attention.parameters():
            parameter.normal_(std=0.3)  # outputs of order one
        qkv = attention.qkv(x.bfloat16().float()).reshape(2, 7, 3, 4, 12).permute(2, 0, 3, 1, 4).double()
        attended = F.scaled_dot_product_attention(*qkv.unbind(0)).transpose(1, 2).reshape(2, 7, 48)
        expected = F.linear(attended, attention.proj.weight.double(), attention.proj.bias.double())
        with torch.autocast("cpu", dtype=torch.bfloat16):
            actual = attention(x)
        fp32 = attention(x)
    assert actual.dtype == torch.bfloat16 and fp32.dtype == torch.float32
    assert expected.abs().max() > 1

    def relative_rms(a: torch.Tensor) -> float:
        return float((a.double() - expected).pow(2).mean().sqrt() / expected.pow(2).mean().sqrt())

    assert relative_rms(actual) < 0.02  # bf16 rounding; a head mix-up would be of order one
    assert relative_rms(fp32) < 0.01
    with pytest.raises(ValueError, match="no mask"):
        attention(x, attn_mask=torch.zeros(7, 7, dtype=torch.bool))
