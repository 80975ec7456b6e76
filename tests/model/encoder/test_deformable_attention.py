"""Multi-scale deformable attention: naive re-computation, reference vectors, initialisation."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from conftest import assert_close

from s3.model.encoder.deformable_attention import (
    MultiScaleDeformableAttention,
    grid_reference_points,
    sample_with_grid,
    sample_with_taps,
)

MSDA_ATOL = 1e-5


def naive_deformable_attention(
    module: MultiScaleDeformableAttention,
    query: torch.Tensor,
    reference_points: torch.Tensor,
    value: torch.Tensor,
    level_shapes: list[tuple[int, int]],
) -> torch.Tensor:
    """Per query / head / level / point bilinear sampling with explicit 4-neighbour weights."""
    heads, levels, points = module.num_heads, module.num_levels, module.num_points
    head_dim = module.dim // heads
    batch, num_queries, _ = query.shape
    projected = F.linear(value, module.value_proj.weight, module.value_proj.bias)
    offsets = F.linear(query, module.offset_proj.weight, module.offset_proj.bias)
    logits = F.linear(query, module.point_weight_proj.weight, module.point_weight_proj.bias)
    starts = [sum(h * w for h, w in level_shapes[:i]) for i in range(levels)]
    out = torch.zeros(batch, num_queries, module.dim, dtype=torch.float64)
    for b in range(batch):
        for q in range(num_queries):
            for m in range(heads):
                channels = slice(m * head_dim, (m + 1) * head_dim)
                head_logits = logits[b, q, m * levels * points : (m + 1) * levels * points]
                probs = torch.softmax(head_logits.double(), dim=0)
                for lvl, (height, width) in enumerate(level_shapes):
                    for p in range(points):
                        k = (m * levels + lvl) * points + p
                        ref = reference_points[min(b, reference_points.shape[0] - 1), q, lvl]
                        loc_x = ref[0].item() + offsets[b, q, 2 * k].item() / width
                        loc_y = ref[1].item() + offsets[b, q, 2 * k + 1].item() / height
                        gx, gy = loc_x * width - 0.5, loc_y * height - 0.5
                        x0, y0 = math.floor(gx), math.floor(gy)
                        fx, fy = gx - x0, gy - y0
                        sample = torch.zeros(head_dim, dtype=torch.float64)
                        for xi, yi, weight in (
                            (x0, y0, (1 - fx) * (1 - fy)),
                            (x0 + 1, y0, fx * (1 - fy)),
                            (x0, y0 + 1, (1 - fx) * fy),
                            (x0 + 1, y0 + 1, fx * fy),
                        ):
                            if 0 <= xi < width and 0 <= yi < height:
                                token = starts[lvl] + yi * width + xi
                                sample += weight * projected[b, token, channels].double()
                        out[b, q, channels] += probs[lvl * points + p] * sample
    return F.linear(out.float(), module.out_proj.weight, module.out_proj.bias)


@pytest.mark.parametrize("reference_batch", [1, 2])
def test_matches_naive_bilinear_loop(reference_batch: int) -> None:
    torch.manual_seed(0)
    dim, heads, levels, points = 8, 2, 2, 3
    level_shapes = [(3, 4), (2, 3)]
    module = MultiScaleDeformableAttention(dim, heads, num_levels=levels, num_points=points)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.normal_()
        module.offset_proj.bias.mul_(2.0)  # push many points off the grid
    query = torch.randn(2, 7, dim)
    value = torch.randn(2, sum(h * w for h, w in level_shapes), dim)
    reference_points = torch.rand(reference_batch, 7, levels, 2)
    spatial_shapes = torch.tensor(level_shapes)
    level_start_index = torch.tensor([0, level_shapes[0][0] * level_shapes[0][1]])

    with torch.no_grad():
        actual = module(query, reference_points, value, spatial_shapes, level_start_index)
        locations, _ = module.predict_sampling(query, reference_points, spatial_shapes)
    expected = naive_deformable_attention(module, query, reference_points, value, level_shapes)

    outside = ((locations < 0) | (locations > 1)).any(dim=-1).float().mean().item()
    assert 0.1 < outside < 0.9, f"test set-up: fraction of off-grid points {outside:.2f}"
    assert_close(actual, expected, 1e-5, "deformable attention vs naive loop")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_tap_and_grid_formulations_agree(dtype: torch.dtype) -> None:
    """embedding_bag over bilinear taps (inference) and grid_sample (training) give the same sum,
    with zero padding at every border (a third of the points is off the grid)."""
    torch.manual_seed(0)
    level_shapes, level_starts = [(3, 4), (2, 5)], [0, 12]
    value = torch.randn(2, 22, 3, 8).to(dtype)
    locations = torch.rand(2, 9, 3, 2, 4, 2) * 1.6 - 0.3
    point_weights = torch.rand(2, 9, 3, 2, 4).to(dtype)
    taps = sample_with_taps(value, level_shapes, level_starts, locations, point_weights)
    grid = sample_with_grid(value, level_shapes, level_starts, locations, point_weights)
    assert taps.dtype == grid.dtype == dtype
    assert_close(taps.float(), grid.float(), 1e-6 if dtype == torch.float32 else 0.06, "taps vs grid")


def test_training_uses_a_differentiable_formulation() -> None:
    torch.manual_seed(0)
    module = MultiScaleDeformableAttention(8, 2, num_points=3)
    query, value = torch.randn(2, 6, 8), torch.randn(2, 6, 8, requires_grad=True)
    geometry = (torch.rand(1, 6, 1, 2), torch.tensor([[2, 3]]), torch.tensor([0]))
    out = module(query, geometry[0], value, *geometry[1:])
    out.square().sum().backward()
    assert value.grad is not None and module.offset_proj.weight.grad is not None
    with torch.no_grad():
        assert_close(module(query, geometry[0], value, *geometry[1:]), out.detach(), 1e-6, "no-grad vs training")


def test_reproduces_reference_vectors(reference) -> None:
    ref = reference("msda")
    assert "<= 1e-5" in ref.meta["tolerance"]
    module = MultiScaleDeformableAttention(
        ref["config.dim"], ref["config.num_heads"], ref["config.num_levels"], ref["config.num_points"]
    )
    module.load_state_dict(
        {k: v for k, v in ref.tensors.items() if k.split(".")[0] in dict(module.named_children())}, strict=True
    )
    captured: dict[str, torch.Tensor] = {}
    module.value_proj.register_forward_hook(lambda m, args, out: captured.__setitem__("projected_value", out))
    module.out_proj.register_forward_pre_hook(lambda m, args: captured.__setitem__("sampled_sum", args[0]))

    with torch.no_grad():
        output = module(
            ref["query"], ref["reference_points"], ref["value_input"], ref["spatial_shapes"], ref["level_start_index"]
        )
        locations, point_probs = module.predict_sampling(ref["query"], ref["reference_points"], ref["spatial_shapes"])

    assert_close(captured["projected_value"], ref["intermediate.projected_value"], MSDA_ATOL, "projected value")
    assert_close(locations, ref["intermediate.sampling_locations"], MSDA_ATOL, "sampling locations")
    assert_close(point_probs, ref["intermediate.point_probs"], MSDA_ATOL, "point probabilities")
    assert_close(captured["sampled_sum"], ref["intermediate.sampled_sum"], MSDA_ATOL, "sampled sum")
    assert_close(output, ref["out.output"], MSDA_ATOL, "output")

    image_h, image_w = ref["config.image_height"], ref["config.image_width"]
    reference_points = grid_reference_points([(image_h // 8, image_w // 8), (image_h // 16, image_w // 16)])
    assert_close(reference_points, ref["reference_points"], 0.0, "grid reference points")


def test_initialisation_uniform_weights_and_ring_offsets() -> None:
    heads, levels, points = 12, 2, 4
    module = MultiScaleDeformableAttention(48, heads, num_levels=levels, num_points=points)
    query = torch.randn(3, 5, 48)
    reference_points = torch.full((1, 5, levels, 2), 0.5)
    spatial_shapes = torch.tensor([[4, 6], [2, 3]])
    with torch.no_grad():
        locations, weights = module.predict_sampling(query, reference_points, spatial_shapes)

    assert_close(weights, torch.full_like(weights, 1 / (levels * points)), 1e-7, "initial point weights")
    offsets_in_cells = (locations - 0.5) * spatial_shapes.flip(-1)[None, None, None, :, None, :]
    angles = torch.arange(heads) * 2 * math.pi / heads
    directions = torch.stack([angles.cos(), angles.sin()], dim=-1)
    directions = directions / directions.abs().amax(dim=-1, keepdim=True)
    expected = directions[:, None, None, :] * torch.arange(1, points + 1)[None, None, :, None]
    expected = expected.expand(heads, levels, points, 2).expand(3, 5, -1, -1, -1, -1)
    assert_close(offsets_in_cells, expected, 1e-5, "initial offsets")
    # Head 0 points right, head 3 down, head 6 left, head 9 up; the larger component is 1.
    axes = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])
    assert_close(directions[[0, 3, 6, 9]], axes, 1e-6, "axes")
    for linear in (module.value_proj, module.out_proj):
        assert torch.count_nonzero(linear.bias) == 0
        bound = math.sqrt(6 / (linear.in_features + linear.out_features))
        assert linear.weight.abs().max() <= bound


def test_rejects_value_length_mismatch() -> None:
    module = MultiScaleDeformableAttention(8, 2)
    with pytest.raises(ValueError, match="value has 5 tokens"):
        module(
            torch.randn(1, 3, 8),
            torch.rand(1, 3, 1, 2),
            torch.randn(1, 5, 8),
            torch.tensor([[2, 3]]),
            torch.tensor([0]),
        )
