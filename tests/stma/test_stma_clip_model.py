"""STMAClipModel, the STMA training forward: shapes, the reference draws and temporal-memory sizes,
equivariance under permuted object ids, empty slots, the per_object path, and that every
parameter gets a gradient through time."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F
from stma_helpers import PER_OBJECT, tiny_network

from s3.stma.clip_model import STMAClipModel
from s3.stma.network import STMANetwork

pytestmark = pytest.mark.usefixtures("one_thread")

B, T, H, W = 2, 5, 64, 64


def clip(seed: int = 0, num_objects: int = 2, slots: int = 3) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """frames (B, T, 3, H, W), first labels (B, H, W) with objects 1..num_objects, selector (B, slots)."""
    g = torch.Generator().manual_seed(seed)
    frames = torch.rand(B, T, 3, H, W, generator=g)
    labels = torch.zeros(B, H, W, dtype=torch.int64)
    for k in range(1, num_objects + 1):
        top, left = torch.randint(0, H - 20, (2,), generator=g).tolist()
        labels[:, top : top + 16 + 2 * k, left : left + 18] = k
    selector = torch.zeros(B, slots)
    selector[:, :num_objects] = 1
    return frames, labels, selector


def run(net: STMANetwork, frames: torch.Tensor, labels: torch.Tensor, selector: torch.Tensor, seed: int = 0):
    return STMAClipModel(net, num_references=2)(frames, labels, selector, torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def net() -> STMANetwork:
    return tiny_network(seed=1)


def test_outputs_of_frames_one_to_four_without_aux_logits(net: STMANetwork) -> None:
    frames, labels, selector = clip()
    with torch.no_grad():
        out = run(net, frames, labels, selector)
    assert out.logits.shape == out.probs.shape == (B, T - 1, 4, H, W)
    assert out.sensory_logits is None and out.query_logits is None
    torch.testing.assert_close(out.probs.sum(2), torch.ones(B, T - 1, H, W))
    torch.testing.assert_close(out.probs, out.logits.softmax(dim=2))


def test_references_are_two_drawn_past_frames_and_the_temporal_memory_is_all_of_them(
    net: STMANetwork, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Frame t associates with min(t, 2) of its t predecessors (drawn per clip from the generator)
    and reads a temporal memory of all t of them; frame 0 associates with nothing."""
    seen: dict[str, list[Any]] = {"references": [], "memory": [], "associate": []}
    tokens_of_frame: dict[int, torch.Tensor] = {}
    frames, labels, selector = clip(seed=2)
    with torch.no_grad():
        for t in range(T):  # each frame's stem tokens, to recognise the references by
            tokens_of_frame[t] = net.encode_stem(frames[:, t]).tokens
    original_context, original_read, original_associate = net.prepare_context, net.read_memory, net.associate

    def prepare_context(references, objects, object_valid):
        seen["references"].append(references)
        return original_context(references, objects, object_valid)

    def read_memory(key, selection, memory_key, *args, **kwargs):
        assert kwargs.get("top_k") is None  # full softmax in training
        seen["memory"].append(memory_key.shape[-1])
        return original_read(key, selection, memory_key, *args, **kwargs)

    def associate(stem, context=None):
        seen["associate"].append(context)
        return original_associate(stem, context)

    monkeypatch.setattr(net, "prepare_context", prepare_context)
    monkeypatch.setattr(net, "read_memory", read_memory)
    monkeypatch.setattr(net, "associate", associate)
    with torch.no_grad():
        run(net, frames, labels, selector, seed=7)
        first_draws = [r.clone() for r in seen["references"]]
        run(net, frames, labels, selector, seed=7)
    assert seen["associate"][0] is None  # frame 0: plain self-attention
    hw = (H // 16) * (W // 16)
    assert seen["memory"][: T - 1] == [t * hw for t in range(1, T)]
    assert [r.shape[1] for r in first_draws] == [1, 2, 2, 2]
    for t, references in enumerate(first_draws, start=1):
        for b in range(B):
            used = [s for s in range(T) for m in range(references.shape[1])
                    if torch.allclose(references[b, m], tokens_of_frame[s][b], atol=1e-5)]
            assert len(used) == references.shape[1] and len(set(used)) == len(used) and max(used) < t
    # the same generator seed draws the same references
    assert all(torch.equal(a, b) for a, b in zip(first_draws, seen["references"][T - 1 :]))


def test_permuting_object_ids_permutes_the_clip_outputs(net: STMANetwork) -> None:
    frames, labels, selector = clip(seed=3, num_objects=3)
    order = torch.tensor([2, 0, 1])  # new slot i holds old object order[i]
    relabel = torch.zeros(4, dtype=torch.int64)
    relabel[order + 1] = torch.arange(1, 4)
    with torch.no_grad():
        out = run(net, frames, labels, selector)
        permuted = run(net, frames, relabel[labels], selector[:, order])
    torch.testing.assert_close(permuted.logits[:, :, 1:], out.logits[:, :, 1:][:, :, order], atol=1e-4, rtol=0)
    torch.testing.assert_close(permuted.logits[:, :, 0], out.logits[:, :, 0], atol=1e-4, rtol=0)


def test_empty_slots_change_nothing_and_give_no_nan(net: STMANetwork) -> None:
    frames, labels, selector = clip(seed=4, num_objects=2, slots=2)
    padded = torch.cat([selector, torch.zeros(B, 2)], dim=1)  # two empty slots
    with torch.no_grad():
        out = run(net, frames, labels, selector)
        wide = run(net, frames, labels, padded)
    assert torch.isfinite(wide.logits).all() and torch.isfinite(wide.probs).all()
    torch.testing.assert_close(wide.probs[:, :, :3], out.probs, atol=1e-5, rtol=0)
    assert wide.probs[:, :, 3:].max() < 1e-5


def test_the_per_object_path_has_no_temporal_memory_and_is_equivariant(monkeypatch: pytest.MonkeyPatch) -> None:
    variant = tiny_network(PER_OBJECT, seed=2)
    frames, labels, selector = clip(seed=5, num_objects=2, slots=3)
    monkeypatch.setattr(variant, "read_memory", lambda *a, **k: pytest.fail("per_object reads no memory"))
    with torch.no_grad():
        out = run(variant, frames, labels, selector)
        swapped = run(variant, frames, torch.tensor([0, 2, 1])[labels], selector)
    assert out.logits.shape == (B, T - 1, 4, H, W) and torch.isfinite(out.logits).all()
    torch.testing.assert_close(swapped.logits[:, :, [2, 1]], out.logits[:, :, [1, 2]], atol=1e-4, rtol=0)
    assert out.probs[:, :, 3].max() < 1e-5  # the empty slot


@pytest.mark.parametrize("overrides", [[], PER_OBJECT])
def test_every_parameter_learns_through_the_clip(overrides: list[str]) -> None:
    variant = tiny_network(overrides, seed=3).train()
    frames, labels, selector = clip(seed=6)
    out = run(variant, frames[:, :3], labels, selector)
    target = labels.unsqueeze(1).expand(-1, 2, -1, -1)
    F.cross_entropy(out.logits.flatten(0, 1), target.flatten(0, 1)).backward()
    still = [n for n, p in variant.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert still == []


def test_a_clip_needs_two_frames(net: STMANetwork) -> None:
    frames, labels, selector = clip()
    with pytest.raises(ValueError, match="needs >= 2 frames, got 1"):
        run(net, frames[:, :1], labels, selector)
    with pytest.raises(ValueError, match="num_references=0 must be >= 1"):
        STMAClipModel(net, 0)
