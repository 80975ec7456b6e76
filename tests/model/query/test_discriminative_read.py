"""Discriminative query read (paper eqs. 4-6) against a loop-based re-derivation and the reference vectors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import assert_close

from s3.model.query import DiscriminativeQueryRead, foreground_attention_mask

# dq_ca.pt key -> our state-dict name (official name in the comment).
DQ_CA_NAME_MAP = {
    "norm.weight": "norm.weight",  # read_from_pixel.norm.weight
    "norm.bias": "norm.bias",  # read_from_pixel.norm.bias
    "alpha": "alpha",  # read_from_pixel.alpha
    "mix_proj.weight": "mix_proj.weight",  # read_from_pixel.proj.weight
    "mix_proj.bias": "mix_proj.bias",  # read_from_pixel.proj.bias
    "out_proj.weight": "out_proj.weight",  # read_from_pixel.final.weight
    "out_proj.bias": "out_proj.bias",  # read_from_pixel.final.bias
}

# norm_axis -> axis of the (B', Q, C) correspondence that must have unit L2 norm.
NORM_DIMS = {"queries": 1, "channels": 2}


def random_inputs(batch: int, num_queries: int, num_pixels: int, dim: int, dtype=torch.float64):
    """queries, pixels, query_pe, pixel_pe."""
    g = torch.Generator().manual_seed(0)
    shapes = [(num_queries, dim), (num_pixels, dim)] * 2
    return [torch.randn(batch, *s, generator=g, dtype=dtype) for s in shapes]


def random_mask(rows: int, num_queries: int, num_pixels: int, seed: int = 1) -> torch.Tensor:
    """About half blocked, no fully blocked (row, query)."""
    g = torch.Generator().manual_seed(seed)
    mask = torch.rand(rows, num_queries, num_pixels, generator=g) < 0.5
    keep = torch.randint(num_pixels, (rows, num_queries), generator=g)
    mask.scatter_(2, keep.unsqueeze(-1), False)
    return mask


def randomise(module: torch.nn.Module, seed: int = 2) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.5 + 0.1)


@torch.no_grad()
def loop_reference(module: DiscriminativeQueryRead, queries, pixels, query_pe, pixel_pe, attn_mask):
    """The read written out with explicit loops over (b, head, query, pixel)."""
    batch, num_queries, dim = queries.shape
    num_pixels, heads = pixels.shape[1], module.num_heads
    d = dim // heads
    qn = F.layer_norm(queries, (dim,), module.norm.weight, module.norm.bias, 1e-5)
    qt, pt = qn + query_pe, pixels + pixel_pe
    keys = qt / qt.norm(dim=-1, keepdim=True)
    feats = pt / pt.norm(dim=-1, keepdim=True)
    similarity = torch.full((batch, heads, num_pixels, num_queries), float("-inf"), dtype=queries.dtype)
    index = torch.zeros(batch, heads, num_queries, dtype=torch.long)
    selected = torch.zeros_like(queries)
    for b in range(batch):
        for m in range(heads):
            ch = slice(m * d, (m + 1) * d)
            for j in range(num_queries):
                best_score, best_pixel = float("-inf"), -1
                for n in range(num_pixels):
                    if attn_mask[b * heads + m, j, n]:
                        continue
                    score = float((feats[b, n, ch] * keys[b, j, ch]).sum())
                    similarity[b, m, n, j] = score
                    if score > best_score:
                        best_score, best_pixel = score, n
                index[b, m, j] = best_pixel
                selected[b, j, ch] = feats[b, best_pixel, ch]
    mixed = (selected * keys) @ module.mix_proj.weight.T + module.mix_proj.bias
    mixed = mixed / mixed.norm(dim=NORM_DIMS[module.norm_axis], keepdim=True)
    out = (module.alpha * mixed + selected) @ module.out_proj.weight.T + module.out_proj.bias + qn
    return out, similarity, index


class CaptureProjections:
    """Records the mix_proj output (correspondence A) and the out_proj input (alpha*A_hat + Qs)."""

    def __init__(self, module: DiscriminativeQueryRead) -> None:
        self.correspondence: torch.Tensor | None = None
        self.out_proj_input: torch.Tensor | None = None
        self.handles = [
            module.mix_proj.register_forward_hook(self._mix),
            module.out_proj.register_forward_pre_hook(self._out),
        ]

    def _mix(self, _module, _inputs, output) -> None:
        self.correspondence = output.detach()

    def _out(self, _module, inputs) -> None:
        self.out_proj_input = inputs[0].detach()

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def reference_module(ref, norm_axis: str) -> DiscriminativeQueryRead:
    module = DiscriminativeQueryRead(ref["config.dim"], ref["config.num_heads"], norm_axis=norm_axis)
    module.load_state_dict({ours: ref[theirs] for theirs, ours in DQ_CA_NAME_MAP.items()})
    return module


def reference_inputs(ref, case: str = "") -> list[torch.Tensor]:
    return [ref[key] for key in ("queries", "pixels", "query_pe", "pixel_pe", f"{case}attn_mask")]


@pytest.mark.parametrize("norm_axis", list(NORM_DIMS))
def test_matches_loop_reference(norm_axis: str) -> None:
    batch, num_queries, num_pixels, dim, heads = 3, 4, 12, 16, 4
    module = DiscriminativeQueryRead(dim, heads, norm_axis=norm_axis).double()
    randomise(module)
    inputs = random_inputs(batch, num_queries, num_pixels, dim)
    mask = random_mask(batch * heads, num_queries, num_pixels)

    out, similarity = module(*inputs, mask)
    expected_out, expected_similarity, expected_index = loop_reference(module, *inputs, mask)

    assert torch.equal(torch.isinf(similarity), torch.isinf(expected_similarity))
    assert torch.equal(torch.isinf(similarity), mask.view(batch, heads, num_queries, num_pixels).transpose(2, 3))
    finite = torch.isfinite(expected_similarity)
    assert_close(similarity[finite], expected_similarity[finite], 1e-12, "similarity")
    assert torch.equal(similarity.argmax(dim=2), expected_index)
    assert_close(out, expected_out, 1e-10, "queries")


def test_rejects_unknown_norm_axis() -> None:
    with pytest.raises(ValueError, match="norm_axis.*channels.*queries"):
        DiscriminativeQueryRead(32, 4, norm_axis="pixels")


def test_foreground_queries_select_only_foreground_pixels() -> None:
    batch, num_objects, h, w, dim, heads, num_queries = 2, 3, 4, 5, 32, 4, 8
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(batch, num_objects, h, w, generator=g) * 4
    logits[0, 2] = -20  # an object without foreground: its foreground rows get unblocked
    mask = foreground_attention_mask(logits, None, heads, num_queries)
    module = DiscriminativeQueryRead(dim, heads)
    inputs = random_inputs(batch * num_objects, num_queries, h * w, dim, torch.float32)

    _, similarity = module(*inputs, mask)
    index = similarity.argmax(dim=2)  # (B*N, heads, Q)

    prob = torch.sigmoid(logits)
    aggregated = torch.cat([torch.prod(1 - prob, dim=1, keepdim=True), prob], dim=1).clamp(1e-7, 1 - 1e-7)
    aggregated = torch.log(aggregated / (1 - aggregated))
    foreground = aggregated[:, 1:] >= aggregated.max(dim=1, keepdim=True).values
    foreground = foreground.flatten(2).flatten(0, 1)  # (B*N, HW)
    selected_is_foreground = foreground.gather(1, index.flatten(1)).view_as(index)  # (B*N, heads, Q)
    has_foreground = foreground.any(dim=1)
    all_foreground = foreground.all(dim=1)
    half = num_queries // 2
    assert has_foreground.sum() >= 3 and not has_foreground.all()
    assert selected_is_foreground[has_foreground][:, :, :half].all()
    assert not selected_is_foreground[~all_foreground][:, :, half:].any()
    # and, in general, no selected pixel is ever blocked
    blocked = mask.view(batch * num_objects, heads, num_queries, h * w)
    assert not blocked.gather(3, index.unsqueeze(-1)).any()


@pytest.mark.parametrize("case", ["", "case2."])
def test_reproduces_reference(reference, case: str) -> None:
    ref = reference("dq_ca")
    module = reference_module(ref, "queries")
    capture = CaptureProjections(module)
    with torch.no_grad():
        out, similarity = module(*reference_inputs(ref, case))
    capture.remove()

    expected_similarity = ref[f"{case}out.similarity"]
    assert torch.equal(torch.isneginf(similarity), torch.isneginf(expected_similarity))
    finite = torch.isfinite(expected_similarity)
    assert_close(similarity[finite], expected_similarity[finite], 1e-6, "similarity")
    assert torch.equal(similarity.argmax(dim=2), ref[f"{case}intermediate.argmax_index"])
    normalised = F.normalize(capture.correspondence, dim=1)
    selected = capture.out_proj_input - module.alpha.detach() * normalised
    assert_close(selected, ref[f"{case}intermediate.selected_tokens"], 1e-5, "selected tokens")
    assert_close(out, ref[f"{case}out.queries"], 1e-5, "queries")


@pytest.mark.parametrize("norm_axis", list(NORM_DIMS))
def test_correspondence_has_unit_norm_over_the_chosen_axis(reference, norm_axis: str) -> None:
    ref = reference("dq_ca")
    # Selected tokens re-derived independently from the reference argmax indices.
    pixel_keys = F.normalize(ref["pixels"] + ref["pixel_pe"], dim=-1).view(2, 24, 8, 32).transpose(1, 2)
    index = ref["intermediate.argmax_index"].unsqueeze(-1).expand(-1, -1, -1, 32)
    selected = pixel_keys.gather(2, index).transpose(1, 2).reshape(2, 8, 256)
    module = reference_module(ref, norm_axis)
    capture = CaptureProjections(module)
    with torch.no_grad():
        module.alpha.fill_(1.0)  # so that out_proj's input minus the selected tokens is A_hat
        module(*reference_inputs(ref))
    capture.remove()

    normalised = capture.out_proj_input - selected
    dim = NORM_DIMS[norm_axis]
    norms = normalised.norm(dim=dim)
    assert_close(norms, torch.ones_like(norms), 1e-5, "norm of A_hat")
    assert_close(normalised, F.normalize(capture.correspondence, dim=dim), 1e-5, "A_hat")


def test_channel_normalisation_differs_from_reference(reference) -> None:
    ref = reference("dq_ca")
    with torch.no_grad():
        out, similarity = reference_module(ref, "channels")(*reference_inputs(ref))
    assert torch.equal(similarity.argmax(dim=2), ref["intermediate.argmax_index"])
    assert (out - ref["out.queries"]).abs().max() > 1e-2


def test_gradients_reach_pixels_only_at_selected_positions() -> None:
    batch, num_queries, num_pixels, dim, heads = 2, 4, 30, 32, 4
    module = DiscriminativeQueryRead(dim, heads)
    queries, pixels, query_pe, pixel_pe = random_inputs(batch, num_queries, num_pixels, dim, torch.float32)
    pixels.requires_grad_(True)
    mask = random_mask(batch * heads, num_queries, num_pixels)

    out, similarity = module(queries, pixels, query_pe, pixel_pe, mask)
    (out * torch.randn_like(out)).sum().backward()

    index = similarity.argmax(dim=2)  # (B', heads, Q)
    selected = torch.zeros(batch, num_pixels, dtype=torch.bool)
    selected.scatter_(1, index.flatten(1), True)
    has_grad = pixels.grad.abs().amax(dim=-1) > 0
    assert selected.sum() < batch * num_pixels
    assert torch.equal(has_grad, selected)
