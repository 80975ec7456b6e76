"""Pixel-memory readout: reference vectors, the direct similarity formula and top-k properties."""

from __future__ import annotations

import math

import torch
from conftest import assert_close

from s3.model.memory.readout import affinity_from_similarity, anisotropic_l2_similarity, readout_values

SIMILARITY_ATOL = 5e-5
READOUT_ATOL = 1e-5


def direct_similarity(mem_key, mem_shrinkage, query_key, query_selection) -> torch.Tensor:
    """-sum_c e * (k - q)^2 * s / sqrt(CK), in float64, without expanding the square."""
    diff = mem_key.double().unsqueeze(3) - query_key.double().unsqueeze(2)  # (B, CK, M, P)
    weighted = (query_selection.double().unsqueeze(2) * diff.pow(2)).sum(dim=1)  # (B, M, P)
    return -weighted * mem_shrinkage.double().transpose(1, 2) / math.sqrt(mem_key.shape[1])


def random_inputs(batch: int = 2, key_dim: int = 16, mem_size: int = 40, pixels: int = 12):
    g = torch.Generator().manual_seed(3)
    mem_key = torch.randn(batch, key_dim, mem_size, generator=g)
    mem_shrinkage = torch.randn(batch, 1, mem_size, generator=g).pow(2) + 1
    query_key = torch.randn(batch, key_dim, pixels, generator=g)
    query_selection = torch.rand(batch, key_dim, pixels, generator=g)
    return mem_key, mem_shrinkage, query_key, query_selection


def test_reproduces_reference_vectors(reference):
    ref = reference("pixel_readout")
    batch, num_objects, value_dim, _, h, w = ref["memory_values"].shape
    mem_key = ref["memory_keys"].flatten(2)
    mem_shrinkage = ref["memory_shrinkage"].flatten(2)
    query_key = ref["query_key"].flatten(2)
    query_selection = ref["query_selection"].flatten(2)
    values = ref["memory_values"].flatten(3)

    similarity = anisotropic_l2_similarity(mem_key, mem_shrinkage, query_key, query_selection)
    assert_close(similarity, ref["out.similarity"], SIMILARITY_ATOL, "similarity")

    affinity, usage = affinity_from_similarity(similarity, top_k=ref["config.top_k"])
    assert torch.equal(affinity != 0, ref["out.affinity_topk"] != 0), "top-k non-zero set differs"
    assert_close(affinity, ref["out.affinity_topk"], READOUT_ATOL, "affinity_topk")
    assert_close(usage, ref["out.usage_topk"], READOUT_ATOL, "usage_topk")
    readout = readout_values(affinity, values).view(batch, num_objects, value_dim, h, w)
    assert_close(readout, ref["out.readout_topk"], READOUT_ATOL, "readout_topk")

    affinity, usage = affinity_from_similarity(similarity)
    assert usage is None
    assert_close(affinity, ref["out.affinity_full"], READOUT_ATOL, "affinity_full")
    readout = readout_values(affinity, values).view(batch, num_objects, value_dim, h, w)
    assert_close(readout, ref["out.readout_full"], READOUT_ATOL, "readout_full")


def test_similarity_matches_direct_form():
    inputs = random_inputs()
    similarity = anisotropic_l2_similarity(*inputs)
    assert similarity.shape == (2, 40, 12)
    assert_close(similarity, direct_similarity(*inputs), 1e-4, "expanded vs direct similarity")


def test_similarity_defaults_without_shrinkage_or_selection():
    mem_key, _, query_key, query_selection = random_inputs()
    ones = torch.ones(2, 1, 40)
    assert_close(
        anisotropic_l2_similarity(mem_key, None, query_key, torch.ones_like(query_selection)),
        direct_similarity(mem_key, ones, query_key, torch.ones_like(query_selection)),
        1e-4,
        "no shrinkage",
    )
    assert_close(
        anisotropic_l2_similarity(mem_key, ones, query_key, None),
        anisotropic_l2_similarity(mem_key, ones, query_key, torch.ones_like(query_selection)),
        1e-5,
        "no selection",
    )


def test_top_k_keeps_k_entries_per_column_and_reports_usage():
    similarity = anisotropic_l2_similarity(*random_inputs())
    affinity, usage = affinity_from_similarity(similarity, top_k=7)
    assert torch.equal((affinity > 0).sum(dim=1), torch.full((2, 12), 7))
    assert_close(affinity.sum(dim=1), torch.ones(2, 12), 1e-6, "columns sum to 1")
    kept = affinity > 0
    threshold = similarity.topk(7, dim=1).values[:, -1:]  # 7th largest per column
    assert torch.equal(kept, similarity >= threshold)
    assert_close(usage, affinity.sum(dim=2), 1e-6, "usage = row sums")


def test_top_k_of_whole_memory_equals_full_softmax_and_is_shift_safe():
    similarity = anisotropic_l2_similarity(*random_inputs()) * 50  # values far beyond exp's fp32 range
    full, _ = affinity_from_similarity(similarity)
    top_all, _ = affinity_from_similarity(similarity, top_k=1000)
    assert torch.isfinite(full).all() and torch.isfinite(top_all).all()
    assert_close(top_all, full, 1e-6, "top-k >= M vs full softmax")


def test_readout_is_a_per_object_weighted_sum():
    g = torch.Generator().manual_seed(5)
    affinity = torch.softmax(torch.randn(2, 10, 6, generator=g), dim=1)
    values = torch.randn(2, 3, 4, 10, generator=g)
    expected = torch.einsum("bncm,bmp->bncp", values, affinity)
    assert_close(readout_values(affinity, values), expected, 1e-6, "readout")
