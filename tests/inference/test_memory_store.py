"""The pixel memory: FIFO and permanent segments, buckets, top-k readout, usage, consolidation, pruning."""

from __future__ import annotations

import math

import pytest
import torch

from s3.config.inference import InferenceConfig, LongTermConfig
from s3.inference.memory_store import PixelMemory

B, CK, CV, H, W = 1, 4, 3, 2, 3  # 6 tokens per frame


def frame(seed: int, num_objects: int, batch: int = B) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "key": torch.randn(batch, CK, H, W, generator=g),
        "shrinkage": torch.rand(batch, 1, H, W, generator=g) + 1,
        "selection": torch.rand(batch, CK, H, W, generator=g),
        "values": torch.randn(batch, num_objects, CV, H, W, generator=g),
    }


def add(memory: PixelMemory, f: dict[str, torch.Tensor], ids: list[int], permanent: bool = False) -> None:
    memory.add(f["key"], f["shrinkage"], f["selection"], f["values"], ids, permanent=permanent)


def reference_readout(keys, shrinkage, values, query_key, query_selection, top_k):
    """Direct formula: sim[m, p] = -s_m sum_c e_cp (k_cm - q_cp)^2 / sqrt(CK); top-k softmax over m."""
    k = keys[0]  # (CK, M)
    q = query_key[0].flatten(1)  # (CK, P)
    e = query_selection[0].flatten(1)
    sim = -(e[:, None, :] * (k[:, :, None] - q[:, None, :]) ** 2).sum(0) * shrinkage[0, 0][:, None] / math.sqrt(CK)
    top = sim.topk(min(top_k, sim.shape[0]), dim=0)
    weights = torch.zeros_like(sim).scatter_(0, top.indices, torch.softmax(top.values, dim=0))
    return torch.einsum("ncm,mp->ncp", values[0], weights)  # (N, CV, P)


def test_fifo_keeps_the_first_frame_and_the_latest_frames() -> None:
    memory = PixelMemory(InferenceConfig(max_mem_frames=3))
    frames = [frame(i, 2) for i in range(6)]
    for f in frames:
        add(memory, f, [4, 9])
    (bucket,) = memory.buckets
    assert torch.equal(bucket.permanent.key, frames[0]["key"].flatten(2))
    expected = torch.cat([frames[4]["key"].flatten(2), frames[5]["key"].flatten(2)], dim=-1)
    assert torch.equal(bucket.working.key, expected)
    assert memory.num_tokens == 3 * H * W
    assert memory.num_tokens - memory.num_permanent_tokens() <= memory.token_budget()


def test_permanent_writes_land_in_the_permanent_segment_in_order() -> None:
    """Regression for the reference's ignored `prepend`: a forced-permanent frame must be the one kept."""
    memory = PixelMemory(InferenceConfig(max_mem_frames=3, use_long_term=True,
                                         long_term=LongTermConfig(max_mem_frames=4, min_mem_frames=2,
                                                                  num_prototypes=2, max_num_tokens=20, buffer_tokens=2)))
    frames = [frame(i, 1) for i in range(5)]
    add(memory, frames[0], [1])
    add(memory, frames[1], [1])
    add(memory, frames[2], [1], permanent=True)
    add(memory, frames[3], [1])
    (bucket,) = memory.buckets
    assert torch.equal(bucket.permanent.key, torch.cat([frames[0]["key"].flatten(2), frames[2]["key"].flatten(2)], -1))
    assert torch.equal(bucket.permanent.values, torch.cat([frames[0]["values"].flatten(3), frames[2]["values"].flatten(3)], -1))
    assert torch.equal(bucket.working.key, torch.cat([frames[1]["key"].flatten(2), frames[3]["key"].flatten(2)], -1))
    assert bucket.working.use_count.shape == (B, 2 * H * W) and bucket.permanent.use_count is None


def test_readout_matches_the_direct_formula_and_counts_usage() -> None:
    config = InferenceConfig(max_mem_frames=4, use_long_term=True)
    memory = PixelMemory(config)
    frames = [frame(i, 2) for i in range(3)]
    for f in frames:
        add(memory, f, [3, 8])
    query = frame(99, 0)
    out = memory.read(query["key"], query["selection"], [8, 3], top_k=5)
    keys = torch.cat([f["key"].flatten(2) for f in frames], -1)
    shrinkage = torch.cat([f["shrinkage"].flatten(2) for f in frames], -1)
    values = torch.cat([f["values"].flatten(3) for f in frames], -1)
    expected = reference_readout(keys, shrinkage, values, query["key"], query["selection"], top_k=5)
    torch.testing.assert_close(out[0, 1].flatten(1), expected[0], atol=1e-5, rtol=1e-5)  # object 3
    torch.testing.assert_close(out[0, 0].flatten(1), expected[1], atol=1e-5, rtol=1e-5)  # object 8
    working = memory.buckets[0].working
    # every query pixel hands out affinity 1 in total; the permanent frame's share is not counted
    assert working.use_count.sum() <= H * W + 1e-4 and working.use_count.sum() > 0
    assert torch.all(working.life_count == 1)


def test_objects_added_later_get_their_own_bucket_and_removal_purges_them() -> None:
    memory = PixelMemory(InferenceConfig(max_mem_frames=5))
    f0, f1, f2 = frame(0, 2), frame(1, 3), frame(2, 3)
    add(memory, f0, [1, 2])
    add(memory, f1, [1, 2, 7])
    add(memory, f2, [1, 2, 7])
    assert [b.object_ids for b in memory.buckets] == [[1, 2], [7]]
    late = memory.buckets[1]
    assert torch.equal(late.permanent.key, f1["key"].flatten(2))  # its first frame is its permanent frame
    assert torch.equal(late.working.values, f2["values"][:, 2:].flatten(3))
    query = frame(5, 0)
    out = memory.read(query["key"], query["selection"], [7, 1, 2, 11], top_k=30)
    assert out.shape == (B, 4, CV, H, W) and torch.all(out[:, 3] == 0)  # never memorised -> zeros
    # object 7 reads from its two frames only
    keys = torch.cat([f1["key"].flatten(2), f2["key"].flatten(2)], -1)
    shrink = torch.cat([f1["shrinkage"].flatten(2), f2["shrinkage"].flatten(2)], -1)
    vals = torch.cat([f1["values"][:, 2:].flatten(3), f2["values"][:, 2:].flatten(3)], -1)
    expected = reference_readout(keys, shrink, vals, query["key"], query["selection"], top_k=30)
    torch.testing.assert_close(out[0, 0].flatten(1), expected[0], atol=1e-5, rtol=1e-5)

    memory.remove_objects([1, 7])
    assert [b.object_ids for b in memory.buckets] == [[2]]
    assert torch.equal(memory.buckets[0].permanent.values, f0["values"][:, 1:].flatten(3))
    with pytest.raises(ValueError, match="no values given"):
        add(memory, frame(3, 1), [5])


def test_consolidation_picks_the_most_used_tokens_and_bounds_every_segment() -> None:
    lt = LongTermConfig(max_mem_frames=4, min_mem_frames=2, num_prototypes=3, max_num_tokens=10, buffer_tokens=1)
    memory = PixelMemory(InferenceConfig(use_long_term=True, long_term=lt))
    frames = [frame(i, 1) for i in range(20)]
    add(memory, frames[0], [1])
    for f in frames[1:3]:
        add(memory, f, [1])
    bucket = memory.buckets[0]
    assert bucket.working.size == 2 * H * W and bucket.long_term is None
    # make three tokens of the two working frames the most used
    favourite = torch.tensor([1, 7, 10])
    bucket.working.use_count[0, favourite] = 5.0
    bucket.working.life_count[:] = 1.0
    candidate_keys = bucket.working.key.clone()
    add(memory, frames[3], [1])  # the working memory reaches 3 frames: consolidate all but the newest one
    assert bucket.working.size == H * W
    assert torch.equal(bucket.working.key, frames[3]["key"].flatten(2))
    assert bucket.long_term.size == 3
    assert torch.equal(bucket.long_term.key.sort(dim=-1).values, candidate_keys[..., favourite].sort(dim=-1).values)
    # prototype values are convex combinations of the candidates' values (full softmax readout)
    assert torch.all(bucket.long_term.shrinkage >= 1)
    # as in the authors' code a prototype starts unused, whatever its source token's usage
    assert torch.all(bucket.long_term.use_count == 0) and torch.all(bucket.long_term.normalised_usage() == 0)

    working_limit = (lt.max_mem_frames - 1) * H * W
    for f in frames[4:]:
        add(memory, f, [1])
        assert bucket.working.size < working_limit  # reaching the limit consolidates at once
        assert bucket.long_term.size <= lt.max_num_tokens
        assert torch.isfinite(bucket.long_term.use_count).all()  # tokens never read count as unused
        assert memory.num_tokens - memory.num_permanent_tokens() <= memory.token_budget()


def test_pruning_starts_when_the_next_prototypes_would_fill_the_long_term_memory() -> None:
    lt = LongTermConfig(max_mem_frames=3, min_mem_frames=2, num_prototypes=2, max_num_tokens=6, buffer_tokens=1)
    memory = PixelMemory(InferenceConfig(use_long_term=True, long_term=lt))
    for i in range(4):  # frames 1, 2, 3 each reach the 2-frame working limit: frames 1 and 2 are consolidated
        add(memory, frame(i, 1), [1])
    bucket = memory.buckets[0]
    assert bucket.long_term.size == 4 and bucket.working.size == H * W
    usage = torch.tensor([[0.1, 9.0, 0.2, 8.0]])
    bucket.long_term.use_count = usage.clone()
    bucket.long_term.life_count = torch.ones_like(usage)
    survivors = bucket.long_term.key[..., [1, 2, 3]].clone()  # keep the 6 - 2 - 1 = 3 most used, in order
    add(memory, frame(4, 1), [1])  # 4 + 2 prototypes reach max_num_tokens: prune to 3 first, then add 2
    assert bucket.long_term.size == 5
    assert torch.equal(bucket.long_term.key[..., :3], survivors)


def test_flip_batches_pick_prototypes_per_batch_element() -> None:
    lt = LongTermConfig(max_mem_frames=3, min_mem_frames=2, num_prototypes=2, max_num_tokens=50, buffer_tokens=1)
    memory = PixelMemory(InferenceConfig(use_long_term=True, long_term=lt))
    for i in range(2):
        add(memory, frame(i, 2, batch=2), [1, 2])
    bucket = memory.buckets[0]
    bucket.working.use_count[0, 2] = bucket.working.use_count[1, 4] = 3.0
    bucket.working.use_count[0, 3] = bucket.working.use_count[1, 0] = 2.0
    bucket.working.life_count[:] = 1
    old = bucket.working.key[..., : H * W].clone()
    add(memory, frame(2, 2, batch=2), [1, 2])
    assert torch.equal(bucket.long_term.key[0].sort(-1).values, old[0][:, [2, 3]].sort(-1).values)
    assert torch.equal(bucket.long_term.key[1].sort(-1).values, old[1][:, [0, 4]].sort(-1).values)
    query = frame(7, 0, batch=2)
    assert memory.read(query["key"], query["selection"], [1, 2], top_k=4).shape == (2, 2, CV, H, W)
