"""The bootstrapped loss (``loss.kind=bootstrap``, STMA / XMem) and the loss weights, against direct
computations; the point-sampled S3 loss is checked in test_losses.py."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from s3.config import ConfigError
from s3.config.train import LossConfig
from s3.train.losses import bootstrapped_ce_dice, clip_losses, dice_loss

BOOTSTRAP = dict(kind="bootstrap", bootstrap_top_p=0.15, bootstrap_start_warm=100, bootstrap_end_warm=300)


def test_the_bootstrap_share_falls_linearly_between_the_warm_iterations() -> None:
    cfg = LossConfig(**BOOTSTRAP)
    assert [cfg.bootstrap_fraction(i) for i in (0, 50, 99, 100)] == [1.0, 1.0, 1.0, 1.0]
    assert cfg.bootstrap_fraction(200) == pytest.approx(1 - 0.5 * 0.85)
    assert cfg.bootstrap_fraction(150) == pytest.approx(1 - 0.25 * 0.85)
    assert [cfg.bootstrap_fraction(i) for i in (300, 301, 10**6)] == [0.15, 0.15, 0.15]
    same = LossConfig(kind="bootstrap", bootstrap_start_warm=5, bootstrap_end_warm=5)  # a step
    assert (same.bootstrap_fraction(4), same.bootstrap_fraction(5)) == (1.0, same.bootstrap_top_p)


def per_pixel_ce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(F, C, H, W), (F, H, W) -> (F, H*W) cross-entropies written out: logsumexp - logit of the label."""
    flat = logits.double().flatten(2)  # (F, C, P)
    chosen = flat.gather(1, labels.flatten(1).unsqueeze(1)).squeeze(1)
    return flat.logsumexp(dim=1) - chosen


def test_with_p_one_the_bootstrapped_ce_is_the_plain_ce() -> None:
    torch.manual_seed(0)
    logits, labels = torch.randn(3, 4, 6, 5) * 3, torch.randint(0, 4, (3, 6, 5))
    ce, _ = bootstrapped_ce_dice(logits, labels, 1.0)
    plain = sum(F.cross_entropy(logits[f : f + 1], labels[f : f + 1]) for f in range(3))
    assert ce.item() == pytest.approx(plain.item(), rel=1e-6)
    assert ce.item() == pytest.approx(per_pixel_ce(logits, labels).mean(1).sum().item(), rel=1e-6)


@pytest.mark.parametrize("top_p", [0.15, 0.5, 0.99])
def test_the_bootstrapped_ce_averages_the_hardest_pixels_of_each_frame(top_p: float) -> None:
    torch.manual_seed(1)
    logits, labels = torch.randn(2, 3, 8, 8) * 2, torch.randint(0, 3, (2, 8, 8))
    ce, _ = bootstrapped_ce_dice(logits, labels, top_p)
    kept = math.ceil(top_p * 64)
    hardest_means = [sum(sorted(row.tolist(), reverse=True)[:kept]) / kept for row in per_pixel_ce(logits, labels)]
    assert ce.item() == pytest.approx(sum(hardest_means), rel=1e-5)


def test_dice_is_zero_on_a_perfect_mask_and_one_minus_the_overlap_otherwise() -> None:
    truth = torch.zeros(2, 3, 16)
    truth[0, 0, :5] = truth[0, 1, 5:9] = truth[1, 2, 3:] = 1  # object 2 of frame 0 is absent
    assert torch.equal(dice_loss(truth.clone(), truth), torch.zeros(2, 3))
    half = truth * 0.5
    expected = 1 - (2 * 0.5 * truth.sum(-1) + 1) / (1.5 * truth.sum(-1) + 1)
    torch.testing.assert_close(dice_loss(half, truth), expected)

    labels = torch.randint(0, 3, (2, 8, 8))
    perfect = F.one_hot(labels, 3).permute(0, 3, 1, 2).float() * 200 - 100  # softmax is exactly one-hot
    _, dice = bootstrapped_ce_dice(perfect, labels, 1.0)
    assert dice.item() == 0.0


def test_a_model_without_aux_heads_gets_the_weighted_main_terms_only() -> None:
    torch.manual_seed(2)
    b, frames, n = 2, 3, 2
    logits = torch.randn(b, frames, n + 2, 8, 8)  # one padding channel beyond the largest clip
    labels = torch.stack([torch.randint(0, 3, (frames, 8, 8)), torch.randint(0, 2, (frames, 8, 8))])
    cfg = LossConfig(ce_weight=0.5, dice_weight=0.25, **BOOTSTRAP)
    losses = clip_losses(logits, None, None, labels, [2, 1], cfg, iteration=200)
    assert set(losses) == {"ce", "dice", "bootstrap_p", "total"}
    p = cfg.bootstrap_fraction(200)
    assert losses["bootstrap_p"].item() == pytest.approx(p)
    pairs = [bootstrapped_ce_dice(logits[i, :, : count + 1], labels[i], p) for i, count in enumerate([2, 1])]
    ce, dice = sum(c for c, _ in pairs) / b, sum(d for _, d in pairs) / b
    assert losses["ce"].item() == pytest.approx(ce.item(), rel=1e-6)
    assert losses["dice"].item() == pytest.approx(dice.item(), rel=1e-6)
    assert losses["total"].item() == pytest.approx(0.5 * ce.item() + 0.25 * dice.item(), rel=1e-6)
    # the padded channel of clip 1 and the third channel of clip 1 play no part
    changed = logits.clone()
    changed[1, :, 2:] = 50.0
    assert clip_losses(changed, None, None, labels, [2, 1], cfg, 200)["total"].item() == pytest.approx(
        losses["total"].item(), rel=1e-6
    )


def test_the_point_loss_takes_the_main_weights_too(monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(3)
    logits, labels = torch.randn(1, 2, 3, 8, 8), torch.randint(0, 3, (1, 2, 8, 8))
    torch.manual_seed(4)
    plain = clip_losses(logits, None, None, labels, [2], LossConfig(num_points=32))
    torch.manual_seed(4)  # the same points
    weighted = clip_losses(logits, None, None, labels, [2], LossConfig(num_points=32, ce_weight=2.0, dice_weight=0.0))
    assert set(plain) == {"ce", "dice", "total"}
    assert plain["total"].item() == pytest.approx(plain["ce"].item() + plain["dice"].item(), rel=1e-6)
    assert weighted["total"].item() == pytest.approx(2 * plain["ce"].item(), rel=1e-6)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"kind": "focal"}, r"train.stages.0.loss.kind='focal' is not one of \['point', 'bootstrap'\]"),
        ({"bootstrap_top_p": 0.0}, r"loss.bootstrap_top_p must be in \(0, 1\], got 0.0"),
        ({"bootstrap_start_warm": 10, "bootstrap_end_warm": 5}, "need 0 <= bootstrap_start_warm <= bootstrap_end_warm"),
        ({"dice_weight": -1.0}, "loss.dice_weight must be >= 0"),
    ],
)
def test_bad_loss_settings_name_their_key(changes: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        LossConfig(**changes).validate("train.stages.0.loss")
