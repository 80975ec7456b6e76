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

    mem_key (B, CK, M), mem_shrinkage (B, 1, M) | None, query_key (B, CK, P),
    query_selection (B, CK, P) | None -> (B, M, P).
    """
    with torch.autocast(mem_key.device.type, enabled=False):
        mem_key, query_key = mem_key.float(), query_key.float()
        key_dim = mem_key.shape[1]
        mem_key_t = mem_key.transpose(1, 2)  # (B, M, CK)
        if query_selection is None:
            mem_sq = mem_key_t.pow(2).sum(dim=2, keepdim=True)  # (B, M, 1)
            cross = mem_key_t @ query_key
            query_sq = query_key.pow(2).sum(dim=1, keepdim=True)  # (B, 1, P)
        else:
            query_selection = query_selection.float()
            mem_sq = mem_key_t.pow(2) @ query_selection
            cross = mem_key_t @ (query_key * query_selection)
            query_sq = (query_selection * query_key.pow(2)).sum(dim=1, keepdim=True)
        similarity = -mem_sq + 2 * cross - query_sq
        if mem_shrinkage is not None:
            similarity = similarity * mem_shrinkage.float().transpose(1, 2)
        return similarity / math.sqrt(key_dim)


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
        affinity = torch.zeros_like(similarity).scatter_(1, indices, torch.softmax(kept, dim=1))
        return affinity, affinity.sum(dim=2)


def readout_values(affinity: Tensor, values: Tensor) -> Tensor:
    """Affinity-weighted sum of memory values per object.

    affinity (B, M, P), values (B, N, CV, M) -> (B, N, CV, P).
    """
    with torch.autocast(affinity.device.type, enabled=False):
        batch, num_objects, value_dim, mem_size = values.shape
        readout = values.float().reshape(batch, num_objects * value_dim, mem_size) @ affinity.float()
        return readout.view(batch, num_objects, value_dim, -1)
