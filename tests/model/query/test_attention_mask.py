"""Foreground/background attention mask rule of the query reads."""

from __future__ import annotations

import pytest
import torch

from s3.model.query import foreground_attention_mask

F_, T_ = False, True


@pytest.mark.parametrize(
    ("name", "logits_key", "mask_key"),
    [
        ("dq_ca", "mask_source_logits", "attn_mask"),
        ("query_block", "attn_mask_source_logits", "attn_mask"),
        ("query_block", "out.aux_logits", "out.attn_mask"),
        ("object_transformer_prologue", "out.aux_logits0", "out.attn_mask0"),
    ],
)
def test_reproduces_reference_masks(reference, name: str, logits_key: str, mask_key: str) -> None:
    ref = reference(name)
    mask = foreground_attention_mask(ref[logits_key], None, ref["config.num_heads"], ref["config.num_queries"])
    assert mask.dtype == torch.bool
    assert torch.equal(mask, ref[mask_key])


def test_reference_rows_blocked_before_unblocking_are_the_only_change(reference) -> None:
    ref = reference("dq_ca")
    before, mask = ref["attn_mask_before_unblock"], foreground_attention_mask(ref["mask_source_logits"], None, 8, 8)
    fully_blocked = before.all(dim=-1)
    assert fully_blocked.any()
    assert not mask[fully_blocked].any()
    assert torch.equal(mask[~fully_blocked], before[~fully_blocked])


def test_hand_made_two_objects_on_a_2x2_grid() -> None:
    # Pixel 0 belongs to object 0, pixel 1 to object 1, pixels 2 and 3 to the background.
    logits = torch.tensor([[[[5.0, -5.0], [-5.0, -5.0]], [[-5.0, 5.0], [-5.0, -5.0]]]])  # (1, 2, 2, 2)
    fg0, bg0 = [F_, T_, T_, T_], [T_, F_, F_, F_]
    fg1, bg1 = [T_, F_, T_, T_], [F_, T_, F_, F_]
    object0, object1 = [fg0, fg0, bg0, bg0], [fg1, fg1, bg1, bg1]  # queries 0-1 fg, 2-3 bg
    expected = torch.tensor([object0, object0, object1, object1])  # rows: (object, head) object-major
    assert torch.equal(foreground_attention_mask(logits, None, num_heads=2, num_queries=4), expected)

    # Deselecting object 1 leaves it without foreground: its foreground rows would be fully blocked
    # and are unblocked; its background rows are blocked nowhere.
    selector = torch.tensor([1.0, 0.0]).view(1, 2, 1, 1)
    unblocked = [F_, F_, F_, F_]
    expected[2:] = torch.tensor([unblocked] * 4)
    assert torch.equal(foreground_attention_mask(logits, selector, num_heads=2, num_queries=4), expected)


def test_object_covering_everything_unblocks_its_background_queries() -> None:
    logits = torch.full((1, 1, 3, 3), 10.0)
    mask = foreground_attention_mask(logits, None, num_heads=4, num_queries=8)
    assert mask.shape == (4, 8, 9)
    assert not mask.any()


def test_ties_count_as_foreground() -> None:
    # One object with probability 0.5 everywhere: background 0.5 too, an exact tie.
    mask = foreground_attention_mask(torch.zeros(1, 1, 2, 3), None, num_heads=1, num_queries=2)
    assert torch.equal(mask, torch.tensor([[[F_] * 6, [F_] * 6]]))  # bg row fully blocked -> unblocked
    mask = foreground_attention_mask(torch.tensor([[[[0.0, -3.0]]]]), None, num_heads=1, num_queries=2)
    assert torch.equal(mask, torch.tensor([[[F_, T_], [T_, F_]]]))


@pytest.mark.parametrize("num_queries", [8, 16, 32])
def test_first_half_of_the_queries_are_foreground_queries(num_queries: int) -> None:
    g = torch.Generator().manual_seed(0)
    batch, num_objects, heads, h, w = 2, 3, 4, 5, 6
    logits = torch.randn(batch, num_objects, h, w, generator=g) * 3
    mask = foreground_attention_mask(logits, None, heads, num_queries)
    assert mask.shape == (batch * num_objects * heads, num_queries, h * w)
    grouped = mask.view(batch * num_objects, heads, num_queries, h * w)
    assert torch.equal(grouped, grouped[:, :1].expand_as(grouped))  # identical for all heads
    half = num_queries // 2
    fg, bg = grouped[:, 0, :half], grouped[:, 0, half:]
    assert torch.equal(fg, fg[:, :1].expand_as(fg)) and torch.equal(bg, bg[:, :1].expand_as(bg))
    partial = fg[:, 0].any(dim=-1)  # objects with some, but not only, foreground pixels
    assert partial.any()
    assert torch.equal(fg[partial, 0], ~bg[partial, 0])  # complementary where nothing was unblocked


def test_rejects_odd_number_of_queries() -> None:
    with pytest.raises(ValueError, match="even"):
        foreground_attention_mask(torch.zeros(1, 1, 2, 2), None, num_heads=1, num_queries=3)
