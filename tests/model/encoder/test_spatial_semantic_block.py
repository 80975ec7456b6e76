"""Spatial-semantic block, extractor unit, ConvFFN and semantic cross-attention."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import ReferenceVectors, assert_close

from s3.model.encoder import ConvFFN, ExtractorUnit, SemanticCrossAttention, SpatialSemanticBlock

BLOCK_ATOL = 1e-4
DIM, HEADS, POINTS = 768, 12, 4

# Reference-vector weight names -> our state-dict names (prefix replacements, applied in order).
NAME_MAP = (
    ("semantic_attn.in_proj_", "semantic_attn.attn.in_proj_"),
    ("semantic_attn.out_proj.", "semantic_attn.attn.out_proj."),
    ("semantic_attn.norm.", "semantic_attn.norm."),
    (".convffn.", ".ffn."),
    (".deform.", ".deform_attn."),
)


def to_our_names(stored: dict[str, torch.Tensor], unit_offset: int = 0) -> dict[str, torch.Tensor]:
    """Rename reference weights (``unitK.*``, ``semantic_attn.*``) to SpatialSemanticBlock names."""
    renamed = {}
    for key, tensor in stored.items():
        if not (key.startswith("semantic_attn.") or key.startswith("unit")):
            continue
        if key.startswith("unit"):
            unit, rest = key.split(".", 1)
            key = f"units.{int(unit[len('unit'):]) - unit_offset}.{rest}"
        for old, new in NAME_MAP:
            key = key.replace(old, new)
        renamed[key] = tensor
    return renamed


def block_inputs(ref: ReferenceVectors) -> tuple:
    size8 = (ref["config.image_height"] // 8, ref["config.image_width"] // 8)
    size16 = (ref["config.grid_h16"], ref["config.grid_w16"])
    return ref["reference_points"], ref["value_spatial_shapes"], ref["value_level_start_index"], size8, size16


def record_checkpoints(block: SpatialSemanticBlock) -> dict[str, torch.Tensor]:
    """Hooks that store the semantic key/value tokens and every module output of interest."""
    captured: dict[str, torch.Tensor] = {}
    if block.semantic_attn is not None:
        attend = block.semantic_attn.attend

        def recording_attend(tokens: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
            captured["semantic_kv"] = keys
            return attend(tokens, keys)

        block.semantic_attn.attend = recording_attend  # type: ignore[method-assign]
        block.semantic_attn.register_forward_hook(lambda m, a, out: captured.__setitem__("after_semantic", out))
    for i, unit in enumerate(block.units):
        unit.deform_attn.register_forward_hook(lambda m, a, out, i=i: captured.__setitem__(f"unit{i}.deform_out", out))
        unit.register_forward_hook(lambda m, a, out, i=i: captured.__setitem__(f"after_unit{i}", out))
    return captured


@pytest.fixture(scope="module")
def block_first() -> ReferenceVectors:
    return ReferenceVectors("ss_block_first")


@pytest.fixture(scope="module")
def block_last() -> tuple[ReferenceVectors, ReferenceVectors]:
    return ReferenceVectors("ss_block_last"), ReferenceVectors("ss_block_last_extra")


def test_first_block_reproduces_reference(block_first: ReferenceVectors) -> None:
    ref = block_first
    assert "<= 1e-4" in ref.meta["tolerance"]
    block = SpatialSemanticBlock(DIM, HEADS, POINTS, num_units=1)
    block.load_state_dict(to_our_names(ref.tensors), strict=True)
    captured = record_checkpoints(block)
    with torch.no_grad():
        out = block(ref["cnn_tokens"], ref["vit_tokens"], ref["cls_token"], *block_inputs(ref))
    assert_close(captured["semantic_kv"], ref["intermediate.semantic_kv"], BLOCK_ATOL, "semantic kv")
    assert_close(captured["after_semantic"], ref["intermediate.cnn_tokens_after_semantic"], BLOCK_ATOL, "semantic")
    assert_close(captured["unit0.deform_out"], ref["intermediate.unit0.deform_out"], BLOCK_ATOL, "unit0 deform")
    assert_close(out, ref["out.cnn_tokens"], BLOCK_ATOL, "block output")


def test_last_block_reproduces_reference(block_last: tuple[ReferenceVectors, ReferenceVectors]) -> None:
    ref, extra = block_last
    block = SpatialSemanticBlock(DIM, HEADS, POINTS, num_units=3)
    block.load_state_dict({**to_our_names(ref.tensors), **to_our_names(extra.tensors)}, strict=True)
    captured = record_checkpoints(block)
    with torch.no_grad():
        out = block(ref["cnn_tokens"], ref["vit_tokens"], ref["cls_token"], *block_inputs(ref))
    assert_close(captured["semantic_kv"], ref["intermediate.semantic_kv"], BLOCK_ATOL, "semantic kv")
    assert_close(captured["after_semantic"], ref["intermediate.cnn_tokens_after_semantic"], BLOCK_ATOL, "semantic")
    assert_close(captured["unit0.deform_out"], ref["intermediate.unit0.deform_out"], BLOCK_ATOL, "unit0 deform")
    assert_close(captured["after_unit0"], ref["intermediate.cnn_tokens_after_unit0"], BLOCK_ATOL, "after unit0")
    assert_close(captured["unit1.deform_out"], extra["intermediate.unit1.deform_out"], BLOCK_ATOL, "unit1 deform")
    assert_close(captured["after_unit1"], extra["intermediate.cnn_tokens_after_unit1"], BLOCK_ATOL, "after unit1")
    assert_close(captured["unit2.deform_out"], extra["intermediate.unit2.deform_out"], BLOCK_ATOL, "unit2 deform")
    assert_close(out, ref["out.cnn_tokens"], BLOCK_ATOL, "block output")


def test_extra_units_reproduce_reference_alone(block_last: tuple[ReferenceVectors, ReferenceVectors]) -> None:
    _, extra = block_last
    units = [ExtractorUnit(DIM, HEADS, POINTS) for _ in range(2)]
    weights = to_our_names(extra.tensors, unit_offset=1)
    for i, unit in enumerate(units):
        unit.load_state_dict({k.split(".", 2)[2]: v for k, v in weights.items() if k.startswith(f"units.{i}.")})
    tokens = extra["cnn_tokens_in"]
    with torch.no_grad():
        for unit in units:
            tokens = unit(tokens, extra["vit_tokens"], *block_inputs(extra))
    assert_close(tokens, extra["out.cnn_tokens"], BLOCK_ATOL, "extra units output")


def test_conv_ffn_applies_shared_conv_to_each_map_separately() -> None:
    torch.manual_seed(0)
    dim, hidden = 16, 8
    size8, size16 = (6, 10), (3, 5)  # 15 stride-16 tokens: the reference's N // 20 split would fail
    ffn = ConvFFN(dim, hidden)
    tokens = torch.randn(2, 60 + 15, dim)
    with torch.no_grad():
        actual = ffn(tokens, size8, size16)
        hidden_tokens = ffn.fc1(tokens)
        maps = [
            hidden_tokens[:, :60].transpose(1, 2).reshape(2, hidden, *size8),
            hidden_tokens[:, 60:].transpose(1, 2).reshape(2, hidden, *size16),
        ]
        convolved = [
            F.conv2d(m, ffn.dwconv.weight, ffn.dwconv.bias, padding=1, groups=hidden).flatten(2).transpose(1, 2)
            for m in maps
        ]
        expected = ffn.fc2(F.gelu(torch.cat(convolved, dim=1)))
    assert_close(actual, expected, 1e-6, "ConvFFN")

    perturbed = tokens.clone()
    perturbed[:, 60:] += 1.0
    with torch.no_grad():
        changed = ffn(perturbed, size8, size16)
    assert torch.equal(changed[:, :60], actual[:, :60]), "stride-16 tokens leaked into the stride-8 map"

    with pytest.raises(ValueError, match="ConvFFN: got 75 tokens"):
        ffn(tokens, size8, (4, 5))


def test_semantic_attention_residual_is_normalised_tokens() -> None:
    torch.manual_seed(0)
    attention = SemanticCrossAttention(16, 4)
    with torch.no_grad():
        attention.attn.out_proj.weight.zero_()
        attention.attn.out_proj.bias.zero_()
        cnn_tokens = 5 * torch.randn(2, 9, 16) + 3
        out = attention(cnn_tokens, torch.randn(2, 6, 16), torch.randn(2, 1, 16))
    assert_close(out, F.layer_norm(cnn_tokens, (16,), eps=1e-5), 1e-6, "zero attention -> LN(c)")


@pytest.mark.parametrize("num_keys", [1, 2, 5])
def test_semantic_attention_equals_multihead_attention(num_keys: int) -> None:
    """The re-associated few-key attention is nn.MultiheadAttention's, on its own parameters."""
    torch.manual_seed(0)
    attention = SemanticCrossAttention(32, 4).double()
    with torch.no_grad():
        for parameter in attention.parameters():
            parameter.normal_()
        tokens, keys = torch.randn(2, 11, 32).double(), torch.randn(2, num_keys, 32).double()
        expected, _ = attention.attn(tokens, keys, keys, need_weights=False)
        assert_close(attention.attend(tokens, keys), expected, 1e-9, "few-key attention vs MultiheadAttention")


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_switches_remove_exactly_their_parameters() -> None:
    full = SpatialSemanticBlock(DIM, HEADS, POINTS, num_units=3)
    spatial_only = SpatialSemanticBlock(DIM, HEADS, POINTS, num_units=3, semantic=False)
    semantic_only = SpatialSemanticBlock(DIM, HEADS, POINTS, num_units=3, spatial=False)
    semantic_size, unit_size = 2_363_904, 1_594_320  # counted on the reference implementation
    assert _count(SemanticCrossAttention(DIM, HEADS)) == semantic_size
    assert _count(ExtractorUnit(DIM, HEADS, POINTS)) == unit_size
    assert _count(full) == semantic_size + 3 * unit_size
    assert _count(full) - _count(spatial_only) == semantic_size
    assert _count(full) - _count(semantic_only) == 3 * unit_size
    assert spatial_only.semantic_attn is None and len(semantic_only.units) == 0
    with pytest.raises(ValueError, match="at least one of semantic and spatial"):
        SpatialSemanticBlock(DIM, HEADS, POINTS, semantic=False, spatial=False)


def test_switched_off_parts_are_skipped_entirely() -> None:
    torch.manual_seed(0)
    dim, size8, size16 = 16, (4, 6), (2, 3)
    cnn_tokens, patch_tokens, cls_token = torch.randn(2, 30, dim), torch.randn(2, 6, dim), torch.randn(2, 1, dim)
    geometry = (torch.rand(1, 30, 1, 2), torch.tensor([[2, 3]]), torch.tensor([0]), size8, size16)

    spatial_only = SpatialSemanticBlock(dim, 4, 2, semantic=False)
    semantic_only = SpatialSemanticBlock(dim, 4, 2, spatial=False)
    with torch.no_grad():
        assert torch.equal(
            spatial_only(cnn_tokens, patch_tokens, cls_token, *geometry),
            spatial_only.units[0](cnn_tokens, patch_tokens, *geometry),
        )
        assert torch.equal(
            semantic_only(cnn_tokens, patch_tokens, cls_token, *geometry),
            semantic_only.semantic_attn(cnn_tokens, patch_tokens, cls_token),
        )


def test_layer_norm_eps() -> None:
    """The reference vectors only pin value_norm's eps (the other unit norms see O(1) inputs)."""
    block = SpatialSemanticBlock(16, 4, 2)
    unit = block.units[0]
    assert block.semantic_attn.norm.eps == 1e-5
    assert unit.query_norm.eps == unit.value_norm.eps == unit.ffn_norm.eps == 1e-6
