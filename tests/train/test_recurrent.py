"""The recurrent training forward over a clip: shapes, memory sub-sampling, deep-update coins,
back-propagation through time and gradients for every trainable parameter (what DDP relies on)."""

from __future__ import annotations

from typing import Iterator

import pytest
import torch

from s3.config import load_model_config
from s3.model.network import S3Network
from s3.train.recurrent import RecurrentClipModel, first_frame_masks


@pytest.fixture(scope="module")
def tiny() -> Iterator[S3Network]:
    """s3_tiny in training mode, run on one thread (two threads thrash when the CPU is shared)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield S3Network(load_model_config("s3_tiny")).train()
    torch.set_num_threads(threads)


def clip(b: int = 2, t: int = 4, n: int = 2, size: int = 64) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random frames (B, T, 3, H, W), labels (B, T, H, W) and a selector with clip 1 holding one object."""
    g = torch.Generator().manual_seed(3)
    frames = torch.rand(b, t, 3, size, size, generator=g)
    labels = torch.randint(0, n + 1, (b, t, size, size), generator=g)
    labels[1] = labels[1].clamp(max=1)
    selector = torch.ones(b, n)
    selector[1, 1:] = 0
    return frames, labels, selector


def test_first_frame_masks_are_one_hot_objects_times_the_selector() -> None:
    labels = torch.tensor([[[0, 1], [2, 1]]])
    masks = first_frame_masks(labels, torch.tensor([[1.0, 0.0]]))
    assert masks.tolist() == [[[[0.0, 1.0], [0.0, 1.0]], [[0.0, 0.0], [0.0, 0.0]]]]


def test_outputs_cover_frames_1_to_t_minus_1(tiny: S3Network) -> None:
    frames, labels, selector = clip(t=5)
    model = RecurrentClipModel(tiny, num_ref_frames=2, deep_update_prob=0.2)
    with torch.no_grad():
        out = model(frames, labels[:, 0], selector, torch.Generator().manual_seed(0))
    levels = tiny.cfg.query.num_blocks + 1
    assert out.logits.shape == out.probs.shape == (2, 4, 3, 64, 64)
    assert out.sensory_logits.shape == (2, 4, 3, 4, 4)
    assert out.query_logits.shape == (2, 4, 3, levels, 4, 4)
    torch.testing.assert_close(out.probs.sum(dim=2), torch.ones(2, 4, 64, 64))
    assert out.probs[1, :, 2].max() < 1e-5  # clip 1's padded object slot stays empty


def test_memory_is_every_earlier_frame_up_to_num_ref_frames_then_a_draw_per_clip() -> None:
    model = RecurrentClipModel(torch.nn.Module(), num_ref_frames=3, deep_update_prob=0.2)  # type: ignore[arg-type]
    g = torch.Generator().manual_seed(0)
    assert model.memory_frames(2, batch=2, generator=g).tolist() == [[0, 1], [0, 1]]
    assert model.memory_frames(3, batch=1, generator=g).tolist() == [[0, 1, 2]]
    draws = model.memory_frames(7, batch=64, generator=g)
    assert draws.shape == (64, 3) and draws.min() >= 0 and draws.max() <= 6
    assert all(len(set(row)) == 3 for row in draws.tolist())  # without replacement
    assert len({tuple(sorted(row)) for row in draws.tolist()}) > 10  # drawn independently per clip


@pytest.mark.parametrize("probability, expected", [(0.0, [True, False, False]), (1.0, [True, True, True])])
def test_deep_updates_follow_the_coin(tiny: S3Network, probability: float, expected: list[bool], monkeypatch) -> None:
    flags: list[bool] = []
    encode_mask = tiny.encode_mask

    def recording(*args, deep_update: bool = True, **kwargs):
        flags.append(deep_update)
        return encode_mask(*args, deep_update=deep_update, **kwargs)

    monkeypatch.setattr(tiny, "encode_mask", recording)
    frames, labels, selector = clip(t=4)
    with torch.no_grad():
        RecurrentClipModel(tiny, 3, probability)(frames, labels[:, 0], selector, torch.Generator().manual_seed(0))
    assert flags == expected  # frame 0 (ground truth) always, then frames 1 and 2 by the coin


def test_the_generator_makes_the_forward_reproducible(tiny: S3Network) -> None:
    frames, labels, selector = clip(t=6)
    model = RecurrentClipModel(tiny, num_ref_frames=2, deep_update_prob=0.5)
    tiny.eval()  # no drop path
    try:
        with torch.no_grad():
            a = model(frames, labels[:, 0], selector, torch.Generator().manual_seed(5)).logits
            b = model(frames, labels[:, 0], selector, torch.Generator().manual_seed(5)).logits
            c = model(frames, labels[:, 0], selector, torch.Generator().manual_seed(6)).logits
    finally:
        tiny.train()
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_the_last_frame_back_propagates_into_earlier_predictions(tiny: S3Network, monkeypatch) -> None:
    """The prediction of frame 1 is memorised (not detached), so frame 2's output depends on it."""
    kept: list[torch.Tensor] = []
    decode = tiny.decode

    def keeping(*args, **kwargs):
        sensory, logits, probs = decode(*args, **kwargs)
        probs.retain_grad()
        kept.append(probs)
        return sensory, logits, probs

    monkeypatch.setattr(tiny, "decode", keeping)
    frames, labels, selector = clip(t=3)
    out = RecurrentClipModel(tiny, 3, 0.2)(frames, labels[:, 0], selector, torch.Generator().manual_seed(0))
    out.logits[:, -1].square().mean().backward()
    tiny.zero_grad(set_to_none=True)
    assert len(kept) == 2 and kept[0].grad is not None and kept[0].grad[:, 1:].abs().sum() > 0


def test_every_trainable_parameter_gets_a_gradient_and_the_vit_none(tiny: S3Network) -> None:
    frames, labels, selector = clip(t=3)
    model = RecurrentClipModel(tiny, 3, deep_update_prob=0.0)  # fewest modules used: no later deep update
    out = model(frames, labels[:, 0], selector, torch.Generator().manual_seed(0))
    (out.logits.square().mean() + out.sensory_logits.mean() + out.query_logits.mean()).backward()
    missing = [n for n, p in tiny.named_parameters() if p.requires_grad and p.grad is None]
    frozen_with_grad = [n for n, p in tiny.named_parameters() if not p.requires_grad and p.grad is not None]
    tiny.zero_grad(set_to_none=True)
    assert missing == [] and frozen_with_grad == []
