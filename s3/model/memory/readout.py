"""Pixel-memory readout: anisotropic L2 similarity, softmax affinity and value readout.

Layouts: memory axes are flattened frame-major then row-major (index = t*h*w + row*w + column);
similarity and affinity are ``(B, M, P)`` with the memory on axis 1 and the query pixels on axis 2,
so every softmax runs over axis 1. All three functions compute in fp32 with autocast disabled.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def anisotropic_l2_similarity(
    mem_key: Tensor,
    mem_shrinkage: Tensor | None,
    query_key: Tensor,
    query_selection: Tensor | None,
) -> Tensor:
    """Negative selection-weighted squared distance, scaled by the memory shrinkage.

    similarity[b, m, p] = -s[b, m] * sum_c e[b, c, p] * (k[b, c, m] - q[b, c, p])^2 / sqrt(CK),
    evaluated in the expanded form -(k^2)^T e + 2 k^T (q e) - sum_c e q^2 (the last, query-only term
    cancels in the softmax but is kept). A missing selection counts as all ones, a missing shrinkage
    as one.

    The three terms and the scaling are one matrix product: memory rows s/sqrt(CK) * [-k^2, 2k, -1]
    against query columns [e; q e; sum_c e q^2]. It is computed query-major, so the result is a
    (B, M, P) view whose memory axis is contiguous: the top-k and softmax over it read memory order.

    mem_key (B, CK, M), mem_shrinkage (B, 1, M) | None, query_key (B, CK, P),
    query_selection (B, CK, P) | None -> (B, M, P).
    """
    with torch.autocast(mem_key.device.type, enabled=False):
        mem_key, query_key = mem_key.float(), query_key.float()
        key_dim = mem_key.shape[1]
        selection = torch.ones_like(query_key) if query_selection is None else query_selection.float()
        weighted_query = query_key * selection
        query_side = torch.cat(  # (B, 2CK+1, P)
            [selection, weighted_query, (weighted_query * query_key).sum(dim=1, keepdim=True)], dim=1
        )
        scale = torch.full_like(mem_key[:, :1], key_dim**-0.5)
        if mem_shrinkage is not None:
            scale = scale * mem_shrinkage.float()
        memory_side = torch.cat([-mem_key.pow(2), 2 * mem_key, -torch.ones_like(scale)], dim=1) * scale  # (B, 2CK+1, M)
        return torch.bmm(query_side.transpose(1, 2), memory_side).transpose(1, 2)


def affinity_from_similarity(similarity: Tensor, top_k: int | None = None) -> tuple[Tensor, Tensor | None]:
    """Softmax over the memory axis, optionally restricted to the ``top_k`` largest entries.

    similarity (B, M, P) -> affinity (B, M, P) (each column sums to 1; with top-k, all but k entries
    per column are exactly 0) and, with top-k only, the usage (B, M) = affinity summed over pixels.
    A ``top_k`` of M or more keeps every entry.
    """
    with torch.autocast(similarity.device.type, enabled=False):
        similarity = similarity.float()
        if top_k is None:
            return torch.softmax(similarity, dim=1), None
        kept, indices = torch.topk(similarity, k=min(top_k, similarity.shape[1]), dim=1)
        weights = torch.softmax(kept, dim=1)
        affinity = torch.zeros_like(similarity).scatter_(1, indices, weights)
        usage = similarity.new_zeros(similarity.shape[:2]).scatter_add_(1, indices.flatten(1), weights.flatten(1))
        return affinity, usage


def readout_values(affinity: Tensor, values: Tensor) -> Tensor:
    """Affinity-weighted sum of memory values per object.

    affinity (B, M, P), values (B, N, CV, M) -> (B, N, CV, P).
    """
    with torch.autocast(affinity.device.type, enabled=False):
        batch, num_objects, value_dim, mem_size = values.shape
        readout = values.float().reshape(batch, num_objects * value_dim, mem_size) @ affinity.float()
        return readout.view(batch, num_objects, value_dim, -1)
