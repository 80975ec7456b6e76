"""The point-sampled losses against direct computations on small tensors."""

from __future__ import annotations

import pytest
import torch

from s3.config.train import LossConfig
from s3.train import losses as losses_module
from s3.train.losses import clip_losses, point_ce_dice, sample_points, uncertain_point_coords


def pixel_centres(frames: int, h: int, w: int) -> torch.Tensor:
    """(frames, h*w, 2) normalised (x, y) coordinates of every pixel centre, row-major."""
    ys, xs = torch.meshgrid((torch.arange(h) + 0.5) / h, (torch.arange(w) + 0.5) / w, indexing="ij")
    return torch.stack([xs.flatten(), ys.flatten()], dim=-1).expand(frames, -1, -1)


def direct_ce_dice(logits: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    """Loops over frames, pixels and objects: CE averaged over pixels and summed over frames; dice per
    object summed over frames, then averaged over objects."""
    frames, classes, h, w = logits.shape
    ce = 0.0
    for f in range(frames):
        total = 0.0
        for y in range(h):
            for x in range(w):
                total -= torch.log_softmax(logits[f, :, y, x].double(), dim=0)[labels[f, y, x]].item()
        ce += total / (h * w)
    dice_per_object = []
    for k in range(1, classes):
        loss = 0.0
        for f in range(frames):
            p = torch.softmax(logits[f].double(), dim=0)[k]
            g = (labels[f] == k).double()
            loss += 1 - (2 * (p * g).sum().item() + 1) / (p.sum().item() + g.sum().item() + 1)
        dice_per_object.append(loss)
    return ce, sum(dice_per_object) / len(dice_per_object)


def test_sampling_at_pixel_centres_reads_the_pixels_in_xy_order() -> None:
    maps = torch.arange(2 * 1 * 3 * 4, dtype=torch.float32).view(2, 1, 3, 4)
    values = sample_points(maps, pixel_centres(2, 3, 4))
    torch.testing.assert_close(values, maps.flatten(2), atol=1e-5, rtol=0)


def test_ce_and_dice_at_pixel_centres_equal_the_direct_computation() -> None:
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 4, 5) * 2
    labels = torch.randint(0, 3, (2, 4, 5))
    target = torch.nn.functional.one_hot(labels, 3).permute(0, 3, 1, 2).float()
    ce, dice = point_ce_dice(logits, target, pixel_centres(2, 4, 5))
    expected_ce, expected_dice = direct_ce_dice(logits, labels)
    assert ce.item() == pytest.approx(expected_ce, abs=1e-5)
    assert dice.item() == pytest.approx(expected_dice, abs=1e-5)


def constant_maps(values: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """values (..., C) -> (..., C, h, w) spatially constant maps."""
    return values[..., None, None].expand(*values.shape, h, w).clone()


def closed_form(z: torch.Tensor, label: torch.Tensor, n: int, points: int) -> tuple[float, float]:
    """Terms of one clip whose maps are constant: z (F, C) logits, label (F,) the class of every pixel."""
    z = z[:, : n + 1].double()
    ce = sum(-torch.log_softmax(z[f], 0)[label[f]].item() for f in range(len(z)))
    p = torch.softmax(z, dim=1)
    dice = 0.0
    for k in range(1, n + 1):
        for f in range(len(z)):
            g = float(label[f] == k)
            dice += 1 - (2 * points * p[f, k].item() * g + 1) / (points * p[f, k].item() + points * g + 1)
    return ce, dice / n


def test_clip_losses_on_constant_maps_equal_the_closed_form(monkeypatch: pytest.MonkeyPatch) -> None:
    """With spatially constant logits and labels every interior point sees the same values, so the
    whole loss (both clips, padding channels, aux levels, weights, batch averaging) has a closed form.
    Points are drawn away from the border, where bilinear sampling blends in zero padding."""

    def interior_points(logits: torch.Tensor, num_points: int, *args: float) -> torch.Tensor:
        return 0.25 + 0.5 * torch.rand(logits.shape[0], num_points, 2)

    monkeypatch.setattr(losses_module, "uncertain_point_coords", interior_points)
    torch.manual_seed(1)
    b, frames, channels, levels, points = 2, 2, 3, 2, 64
    cfg = LossConfig(
        num_points=points, oversample_ratio=2.0, importance_sample_ratio=0.75, sensory_weight=0.3, query_weight=0.05
    )
    z_main = torch.randn(b, frames, channels) * 2
    z_sensory = torch.randn(b, frames, channels)
    z_query = torch.randn(b, frames, channels, levels)
    num_objects = [2, 1]
    label = torch.tensor([[0, 2], [1, 1]])  # (B, F): the class of every pixel of each frame
    z_main[1, :, 2] = 50.0  # clip 1 has one object: its padded channel must not matter
    losses = clip_losses(
        constant_maps(z_main, 8, 8),
        constant_maps(z_sensory, 2, 2),
        constant_maps(z_query.transpose(2, 3), 2, 2).transpose(2, 3),  # (B, F, C, L, h, w)
        label[:, :, None, None].expand(b, frames, 8, 8),
        num_objects,
        cfg,
    )
    terms = [("ce", "dice", z_main), ("sensory_ce", "sensory_dice", z_sensory)]
    terms += [(f"query_ce_{l}", f"query_dice_{l}", z_query[..., l]) for l in range(levels)]
    expected: dict[str, float] = {}
    for ce_key, dice_key, z in terms:
        pairs = [closed_form(z[i], label[i], num_objects[i], points) for i in range(b)]
        expected[ce_key] = sum(ce for ce, _ in pairs) / b
        expected[dice_key] = sum(dice for _, dice in pairs) / b
    expected["total"] = (
        expected["ce"]
        + expected["dice"]
        + 0.3 * (expected["sensory_ce"] + expected["sensory_dice"])
        + 0.05 * sum(expected[f"query_{kind}_{l}"] for kind in ("ce", "dice") for l in range(levels))
    )
    assert set(losses) == set(expected)
    for key, value in expected.items():
        assert losses[key].item() == pytest.approx(value, rel=1e-5, abs=1e-5), key


def test_uncertain_points_concentrate_where_the_top_two_logits_are_close() -> None:
    torch.manual_seed(2)
    x = (torch.arange(64) + 0.5) / 64
    foreground = (20 * (x - 0.5)).view(1, 1, 64).expand(1, 64, 64)  # decision boundary at x = 0.5
    logits = torch.cat([-foreground, foreground]).unsqueeze(0)  # (1, 2, 64, 64)
    coords = uncertain_point_coords(logits, num_points=1000, oversample_ratio=3.0, importance_sample_ratio=0.75)
    assert coords.shape == (1, 1000, 2) and coords.min() >= 0 and coords.max() <= 1
    distance = (coords[0, :, 0] - 0.5).abs()
    # the 750 most uncertain of 3000 uniform candidates: the quarter nearest the boundary (|dx| ~< 0.125;
    # a few lie farther where the zero padding of bilinear sampling shrinks the logits at the border)
    assert (distance[:750] < 0.14).float().mean() > 0.95
    assert (distance[750:] > 0.25).sum() > 100  # the other 250 are uniform


def test_a_clip_needs_a_real_object() -> None:
    logits = torch.zeros(1, 2, 3, 32, 32)
    with pytest.raises(ValueError, match=r"num_objects \[0\] must hold 1 values in \[1, 2\]"):
        clip_losses(
            logits, torch.zeros(1, 2, 3, 2, 2), torch.zeros(1, 2, 3, 1, 2, 2),
            torch.zeros(1, 2, 32, 32, dtype=torch.long), [0], LossConfig(num_points=16),
        )
