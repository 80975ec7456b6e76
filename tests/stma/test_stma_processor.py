"""STMAVideoProcessor: the VideoProcessor API, both memories' schedules and bounds, objects added and
removed mid-video, the cached context, equivariance under permuted ids, every InferenceConfig
setting, reverse propagation, and the ablations whose engine behaviour differs."""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import pytest
import torch
from engine_inputs import FIRST, H, W, images, index_mask
from PIL import Image
from stma_helpers import PER_OBJECT, stma_config, tiny_network

from s3.config.inference import InferenceConfig, LongTermConfig
from s3.config.validation import ConfigError
from s3.inference.processor import VideoProcessor
from s3.inference.video import ImageFolder, propagate
from s3.model.compile import compile_network
from s3.stma.network import STMANetwork
from s3.stma.processor import STMAVideoProcessor

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def net() -> STMANetwork:
    return tiny_network(seed=4)


def processor(network: STMANetwork, **settings: object) -> STMAVideoProcessor:
    return STMAVideoProcessor(network, InferenceConfig(**settings))


def test_it_has_the_public_api_of_video_processor(net: STMANetwork) -> None:
    def public(obj: object) -> set[str]:
        return {n for n in dir(obj) if not n.startswith("_")}

    ours = public(processor(net))
    assert {"object_ids", "network", "device", "config", "frame_size", "padded_size", "memory"} <= ours
    methods = [n for n in public(VideoProcessor) if callable(getattr(VideoProcessor, n))]
    assert set(methods) == {"step", "remove_objects", "clear_memory", "clear_non_permanent_memory",
                            "clear_sensory_memory", "update_config"}
    for name in methods:
        assert inspect.signature(getattr(VideoProcessor, name)) == inspect.signature(getattr(STMAVideoProcessor, name))


def test_the_given_mask_comes_back_with_arbitrary_ids(net: STMANetwork) -> None:
    engine = processor(net)
    out = engine.step(images(1)[0], FIRST)
    assert out.object_ids == [5, 17] and out.probabilities.shape == (3, H, W)
    assert torch.equal(out.id_mask(), FIRST) and out.memorised
    assert engine.padded_size == (48, 64)
    follow = engine.step(images(2)[1])
    assert follow.probabilities.shape == (3, H, W) and torch.isfinite(follow.probabilities).all()
    torch.testing.assert_close(follow.probabilities.sum(0), torch.ones(H, W))


def test_both_memories_follow_the_schedule_and_their_bounds(net: STMANetwork) -> None:
    engine = processor(net, mem_every=3, max_mem_frames=3, memorise_empty_frames=True)
    frames = images(12)
    flags = [engine.step(frames[0], FIRST).memorised]
    flags += [engine.step(f, end=i == 10).memorised for i, f in enumerate(frames[1:])]
    assert flags == [True, False, False, True, False, False, True, False, False, True, False, False]
    hw = 3 * 4
    bucket = engine.memory.buckets[0]
    assert bucket.permanent.size == hw and bucket.working.size == 2 * hw  # max_mem_frames 3: first + 2
    assert len(engine.spatial_memory) == 3  # model.spatial_memory_size: the first frame and the 2 latest
    assert [f.pinned for f in engine.spatial_memory.frames] == [True, False, False]


def test_the_long_term_memory_consolidates_by_usage(net: STMANetwork) -> None:
    long_term = LongTermConfig(max_mem_frames=3, min_mem_frames=2, num_prototypes=5, max_num_tokens=20, buffer_tokens=0)
    engine = processor(net, mem_every=1, use_long_term=True, long_term=long_term, memorise_empty_frames=True)
    frames = images(8, seed=1)
    engine.step(frames[0], FIRST)
    for frame in frames[1:]:
        engine.step(frame)
    bucket = engine.memory.buckets[0]
    assert 0 < bucket.long_term.size <= 20 and bucket.working.size <= 2 * 12


def test_objects_added_and_removed_mid_video(net: STMANetwork) -> None:
    engine = processor(net, mem_every=1)
    frames = images(6, seed=2)
    engine.step(frames[0], FIRST)
    engine.step(frames[1])
    out = engine.step(frames[2], index_mask({9: (24, 2, 38, 20)}), objects=[9])
    assert out.object_ids == [5, 17, 9] and torch.all(out.id_mask()[24:38, 2:20] == 9)
    assert [b.object_ids for b in engine.memory.buckets] == [[5, 17], [9]]
    assert engine.spatial_memory.frames[-1].first_appearance_of == {9}
    follow = engine.step(frames[3])
    assert follow.probabilities.shape == (4, H, W) and torch.isfinite(follow.probabilities).all()
    engine.remove_objects([5, 9])
    out = engine.step(frames[4])
    assert out.object_ids == [17] and out.probabilities.shape == (2, H, W)
    assert engine.memory.object_ids == [17]
    assert not any(f.first_appearance_of & {5, 9} for f in engine.spatial_memory.frames)


def test_an_object_listed_with_an_empty_mask_gives_no_nan(net: STMANetwork) -> None:
    engine = processor(net, mem_every=1)
    frames = images(3, seed=3)
    first = engine.step(frames[0], FIRST, objects=[5, 17, 23])  # 23: absent on this frame
    assert first.object_ids == [5, 17, 23] and first.probability_of(23).max() < 1e-3
    for frame in frames[1:]:
        out = engine.step(frame)
        assert torch.isfinite(out.probabilities).all() and out.object_ids == [5, 17, 23]


def test_permuting_object_ids_permutes_the_engine_outputs(net: STMANetwork) -> None:
    frames = images(5, seed=4)
    per_object = torch.stack([FIRST == 5, FIRST == 17]).float()
    runs = {}
    for order in ([5, 17], [17, 5]):
        engine = processor(net, mem_every=2)
        masks = per_object if order == [5, 17] else per_object[[1, 0]]
        engine.step(frames[0], masks, objects=order)
        runs[tuple(order)] = [engine.step(f) for f in frames[1:]]
    for a, b in zip(runs[(5, 17)], runs[(17, 5)]):
        assert b.object_ids == [17, 5]
        for obj in (5, 17):
            torch.testing.assert_close(a.probability_of(obj), b.probability_of(obj), atol=1e-4, rtol=0)


def test_the_context_is_computed_once_per_memory_state(net: STMANetwork, monkeypatch: pytest.MonkeyPatch) -> None:
    frames = images(7, seed=5)
    calls = []
    original = net.prepare_context
    monkeypatch.setattr(net, "prepare_context", lambda *a, **k: calls.append(1) or original(*a, **k))
    cached, fresh = processor(net, mem_every=3), processor(net, mem_every=3)
    outs = [cached.step(frames[0], FIRST)] + [cached.step(f) for f in frames[1:]]
    assert cached.last_memory_index == 6 and len(calls) == 2  # for frames 1-3 and 4-6
    fresh.step(frames[0], FIRST)
    for frame, expected in zip(frames[1:], outs[1:]):
        fresh._context = None  # recompute the streams for every frame
        assert torch.equal(fresh.step(frame).probabilities, expected.probabilities)


def test_clear_calls(net: STMANetwork) -> None:
    engine = processor(net, mem_every=1)
    frames = images(5, seed=6)
    engine.step(frames[0], FIRST)
    for frame in frames[1:4]:
        engine.step(frame)
    engine.clear_sensory_memory()  # STMA has no sensory memory: nothing changes
    engine.clear_non_permanent_memory()
    assert engine.memory.buckets[0].working is None and len(engine.spatial_memory) == 1
    assert engine.step(frames[4]).object_ids == [5, 17]
    engine.clear_memory()
    assert engine.object_ids == [] and engine.padded_size is None and len(engine.spatial_memory) == 0
    assert engine.step(torch.rand(3, 30, 30), torch.ones(30, 30, dtype=torch.int64)).object_ids == [1]


def test_flip_chunking_and_size_settings(net: STMANetwork) -> None:
    frames = images(4, seed=7)

    def video(**settings: object) -> list[torch.Tensor]:
        engine = processor(net, mem_every=1, **settings)
        return [engine.step(frames[0], FIRST).probabilities] + [engine.step(f).probabilities for f in frames[1:]]

    plain = video()
    for a, b in zip(plain, video(chunk_size=1)):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    flipped = video(flip_aug=True)
    assert all(p.shape == (3, H, W) for p in flipped) and not torch.allclose(flipped[-1], plain[-1], atol=1e-4)
    engine = processor(net, flip_aug=True)
    engine.step(frames[0], FIRST)
    assert engine.spatial_memory.frames[0].tokens.shape[0] == 2  # both views memorised
    small = processor(net, max_internal_size=20)
    out = small.step(frames[0], FIRST)
    assert small.padded_size == (32, 32) and out.probabilities.shape == (3, H, W)
    bf16 = video(precision="bf16")  # a random network's probabilities are near ties: compare values, not argmax
    assert not torch.equal(bf16[-1], plain[-1])
    torch.testing.assert_close(bf16[-1], plain[-1], atol=1e-2, rtol=0)


def test_settings_that_cannot_apply_are_refused(net: STMANetwork) -> None:
    engine = processor(net)
    engine.step(images(1)[0], FIRST)
    engine.update_config(top_k=5, mem_every=2)
    assert engine.config.top_k == 5 and engine.memory.config.mem_every == 2
    with pytest.raises(ConfigError, match="inference.flip_aug: cannot change in the middle of a video"):
        engine.update_config(flip_aug=True)
    with pytest.raises(ConfigError, match="inference.sensory: unknown key"):
        engine.update_config(sensory=1)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="inference.precision=fp16 needs a CUDA device"):
            processor(net, precision="fp16")
    with pytest.raises(ValueError, match=r"image must be \(3, H, W\)"):
        engine.step(torch.rand(1, H, W))
    with pytest.raises(ValueError, match=r"frame size changed within the video \(70x90 after 40x56\)"):
        engine.step(torch.rand(3, 70, 90))


def test_reverse_propagation_from_the_last_frame(net: STMANetwork, tmp_path: Path) -> None:
    frames = images(5, seed=8)
    for i, frame in enumerate(frames):
        Image.fromarray((frame.permute(1, 2, 0).numpy() * 255).astype(np.uint8)).save(tmp_path / f"{i:05d}.jpg")
    engine = processor(net, mem_every=2)
    order = [(i, p) for i, p in propagate(engine, ImageFolder(tmp_path), {4: FIRST.numpy()}, reverse=True, progress=False)]
    assert [i for i, _ in order] == [4, 3, 2, 1, 0]
    assert torch.equal(order[0][1].id_mask(), FIRST)
    assert all(p.object_ids == [5, 17] and torch.isfinite(p.probabilities).all() for _, p in order)


def test_ablations_change_what_the_engine_keeps() -> None:
    frames = images(4, seed=9)

    def run(overrides: list[str], **settings: object) -> STMAVideoProcessor:
        engine = STMAVideoProcessor(tiny_network(overrides, seed=5), InferenceConfig(mem_every=1, **settings))
        engine.step(frames[0], FIRST)
        for frame in frames[1:]:
            assert torch.isfinite(engine.step(frame).probabilities).all()
        return engine

    assert len(run(["model.stml.references=false"]).spatial_memory) == 0  # W/O Spatial Memory
    no_objects = run(["model.stml.objects=false"])  # W/O Obj
    assert no_objects._association_context().objects is None
    assert run([])._association_context().objects.shape == (1, 2, stma_config().backbone.widths[-1])
    per_object = run(PER_OBJECT, chunk_size=1)  # W/O Temporal Memory
    assert per_object.memory is None and per_object.spatial_memory.frames[0].masks.shape == (1, 2, 48, 64)
    assert run(["model.spatial_memory_size=1"]).spatial_memory.frames[0].first_appearance_of == {5, 17}
    assert len(run(["model.spatial_memory_size=1"]).spatial_memory) == 1
    run(["model.key_dim=null"], use_long_term=True)  # raw keys with unit shrinkage and selection
    run(["model.stml.attention=joint"], flip_aug=True)


def test_per_object_chunking_does_not_change_the_result() -> None:
    variant = tiny_network(PER_OBJECT, seed=6)
    frames = images(3, seed=10)
    outs = []
    for chunk in (-1, 1):
        engine = STMAVideoProcessor(variant, InferenceConfig(mem_every=1, chunk_size=chunk))
        engine.step(frames[0], FIRST)
        outs.append([engine.step(f).probabilities for f in frames[1:]])
    for a, b in zip(*outs):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


def test_a_compiled_network_gives_the_same_frames() -> None:
    """``inference.compile``: s3.model.compile.compile_network works on STMANetwork's children too."""
    frames = images(3, seed=11)
    outs = []
    for compiled in (False, True):
        variant = tiny_network(seed=7)
        if compiled:
            compile_network(variant, backend="eager")
        engine = STMAVideoProcessor(variant, InferenceConfig(mem_every=1))
        outs.append([engine.step(frames[0], FIRST).probabilities] + [engine.step(f).probabilities for f in frames[1:]])
    for a, b in zip(*outs):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
