"""The STMA backbones: the fixed sin-cos position table, the stem's feature shapes (spec 5.1), and
the input-size check."""

from __future__ import annotations

import pytest
import torch
from stma_helpers import reference_sincos_table

from s3.stma.convvit import ConvViT, PlainViT, TransposedConvPyramid, sincos_position_table


@pytest.mark.parametrize("height, width, dim", [(3, 5, 8), (14, 14, 32), (2, 7, 12)])
def test_sincos_table_matches_the_written_out_formula(height: int, width: int, dim: int) -> None:
    torch.testing.assert_close(sincos_position_table(height, width, dim), reference_sincos_table(height, width, dim))


def test_convvitb_stem_shapes_at_384() -> None:
    with torch.device("meta"):
        backbone = ConvViT([256, 384, 768], [2, 2, 11], 12)
        stem = backbone.stem(torch.empty(2, 3, 384, 384))
    assert stem.f4.shape == (2, 256, 96, 96)
    assert stem.f8.shape == (2, 384, 48, 48)
    assert stem.tokens.shape == (2, 24 * 24, 768) and stem.grid == (24, 24)
    assert backbone.skip_channels == (384, 256)


def test_vitb_stem_and_pyramid_shapes_at_384() -> None:
    with torch.device("meta"):
        backbone = PlainViT(768, 12, 12)
        stem = backbone.stem(torch.empty(2, 3, 384, 384))
        f8, f4 = TransposedConvPyramid(768)(torch.empty(2, 768, 24, 24))
    assert stem.tokens.shape == (2, 576, 768) and stem.grid == (24, 24) and stem.f8 is None and stem.f4 is None
    assert f8.shape == (2, 384, 48, 48) and f4.shape == (2, 192, 96, 96)
    assert backbone.skip_channels == (384, 192)


def test_the_stem_adds_the_table_of_the_actual_grid(one_thread: None) -> None:
    torch.manual_seed(0)
    backbone = PlainViT(32, 1, 2)
    image = torch.randn(1, 3, 48, 80)
    tokens = backbone.stem(image).tokens
    patches = backbone.patch_embed(image).flatten(2).transpose(1, 2)
    torch.testing.assert_close(tokens - patches, reference_sincos_table(3, 5, 32).unsqueeze(0), atol=1e-6, rtol=0)


@pytest.mark.parametrize("scale", [0.0, 0.25])
def test_position_scale_multiplies_the_table(one_thread: None, scale: float) -> None:
    image = torch.randn(1, 3, 48, 80)
    torch.manual_seed(0)
    plain = PlainViT(32, 1, 2, position_scale=scale)
    patches = plain.patch_embed(image).flatten(2).transpose(1, 2)
    expected = scale * reference_sincos_table(3, 5, 32).unsqueeze(0)
    torch.testing.assert_close(plain.stem(image).tokens - patches, expected, atol=1e-6, rtol=0)
    torch.manual_seed(0)
    full = ConvViT([16, 24, 32], [1, 1, 1], 2).stem(image).tokens
    torch.manual_seed(0)
    scaled = ConvViT([16, 24, 32], [1, 1, 1], 2, position_scale=scale).stem(image).tokens
    missing = (1 - scale) * reference_sincos_table(3, 5, 32).unsqueeze(0)
    torch.testing.assert_close(full - scaled, missing, atol=1e-5, rtol=0)


def test_inputs_must_be_multiples_of_16() -> None:
    backbone = ConvViT([16, 24, 32], [1, 1, 1], 2)
    with pytest.raises(ValueError, match=r"ConvViT: expected \(B, 3, H, W\) with H, W multiples of 16"):
        backbone.stem(torch.zeros(1, 3, 40, 64))
