"""The streaming processor: object ids, mask merging, memory schedule, flip, chunking, resizing."""

from __future__ import annotations

import pytest
import torch
from engine_inputs import FIRST, H, W, images, index_mask

from s3.config.inference import InferenceConfig
from s3.config.validation import ConfigError
from s3.inference.processor import VideoProcessor, sensory_update_offsets
from s3.inference.streaming import internal_size
from s3.model.aggregation import soft_aggregate


def test_sensory_update_offsets() -> None:
    assert sensory_update_offsets(10, 5) == {1, 3, 6, 8, 10}
    assert sensory_update_offsets(5, 5) == {1, 2, 3, 4, 5}
    assert sensory_update_offsets(3, 8) == {1, 2, 3}


def test_given_mask_is_returned_with_arbitrary_ids(network) -> None:
    processor = VideoProcessor(network, InferenceConfig())
    out = processor.step(images(1)[0], FIRST)
    assert out.object_ids == [5, 17] and out.probabilities.shape == (3, H, W)
    assert torch.equal(out.id_mask(), FIRST)
    assert out.memorised
    torch.testing.assert_close(out.probabilities.sum(0), torch.ones(H, W))


def test_memory_schedule_and_end_frame(network) -> None:
    config = InferenceConfig(mem_every=3, memorise_empty_frames=True)
    processor = VideoProcessor(network, config)
    frames = images(8)
    flags = [processor.step(frames[0], FIRST).memorised]
    flags += [processor.step(f, end=i == 6).memorised for i, f in enumerate(frames[1:])]
    assert flags == [True, False, False, True, False, False, True, False]
    processor = VideoProcessor(network, config)
    processor.step(frames[0], FIRST)
    assert not processor.step(frames[1], index_mask({5: (0, 0, 5, 5)}), end=True).memorised


def test_frames_without_a_target_are_not_memorised(network, monkeypatch) -> None:
    frames = images(4)
    for memorise_empty, expected in ((False, [True, False, False, False]), (True, [True, True, True, True])):
        processor = VideoProcessor(network, InferenceConfig(mem_every=1, memorise_empty_frames=memorise_empty))
        flags = [processor.step(frames[0], FIRST).memorised]

        def empty_prediction(features, key, selection, processor=processor):
            views, _, h, w = features.pix_feat.shape
            prob = torch.zeros(views, len(processor.objects) + 1, 16 * h, 16 * w)
            prob[:, 0] = 1
            return prob

        monkeypatch.setattr(processor, "_segment", empty_prediction)
        flags += [processor.step(f).memorised for f in frames[1:]]
        assert flags == expected


def test_new_object_mid_video_is_merged_into_its_own_channel(network) -> None:
    """Reference computation of the merge (regression for the reference code's tmp_id + 1 index).
    A soft given mask (0.6) keeps the other objects' share visible in the result."""
    frames = images(4)
    plain, merged = VideoProcessor(network, InferenceConfig()), VideoProcessor(network, InferenceConfig())
    for processor in (plain, merged):
        processor.step(frames[0], FIRST)
        processor.step(frames[1])
    predicted = plain.step(frames[2]).probabilities
    region = index_mask({1: (10, 10, 30, 40)}) == 1
    soft = (0.6 * region.float()).unsqueeze(0)  # (1, H, W) per-object mask for object 9
    out = merged.step(frames[2], soft, objects=[9])
    assert out.object_ids == [5, 17, 9]

    objects = torch.cat([predicted[1:], soft])
    objects[:2, region] = 0  # given foreground: the other objects' predictions are dropped there
    expected = torch.softmax(soft_aggregate(objects.unsqueeze(0), dim=1), dim=1)[0]
    torch.testing.assert_close(out.probabilities, expected, atol=1e-5, rtol=1e-4)
    assert torch.all(out.id_mask()[region] == 9)
    assert [b.object_ids for b in merged.memory.buckets] == [[5, 17], [9]]

    follow = merged.step(frames[3])
    assert follow.object_ids == [5, 17, 9] and follow.probabilities.shape == (4, H, W)


def test_a_given_mask_corrects_an_existing_object(network) -> None:
    processor = VideoProcessor(network, InferenceConfig())
    frames = images(3)
    processor.step(frames[0], FIRST)
    correction = index_mask({17: (0, 0, 10, 10)})
    out = processor.step(frames[1], correction, objects=[17])
    assert out.object_ids == [5, 17]
    assert torch.all(out.probability_of(17)[correction == 17] > 0.99)
    assert torch.all(out.probability_of(17)[correction == 0] < 1e-3)  # the given mask replaces the prediction
    assert len(processor.memory.buckets) == 1  # no new bucket for a known object


def test_removing_an_object_purges_it(network) -> None:
    processor = VideoProcessor(network, InferenceConfig(mem_every=1))
    frames = images(4)
    processor.step(frames[0], FIRST)
    processor.step(frames[1])
    processor.remove_objects([5])
    out = processor.step(frames[2])
    assert out.object_ids == [17] and out.probabilities.shape == (2, H, W)
    assert processor.memory.object_ids == [17]
    assert set(processor.summaries.sums) == {17} and set(processor.sensory.states) == {17}
    assert processor.memory.buckets[0].working.values.shape[1] == 1
    with pytest.raises(KeyError, match="untracked"):
        processor.remove_objects([5])
    processor.remove_objects([17])
    empty = processor.step(frames[3])
    assert empty.object_ids == [] and torch.all(empty.probabilities[0] == 1)


def test_flip_averages_the_two_views(network) -> None:
    """With flip_aug each view keeps its own memory; a segmented frame is the mean of the plain
    prediction and the un-flipped prediction on the mirrored video."""
    frames = images(2)
    flip, plain, mirror = (VideoProcessor(network, InferenceConfig(flip_aug=f)) for f in (True, False, False))
    flip.step(frames[0], FIRST)
    plain.step(frames[0], FIRST)
    mirror.step(frames[0].flip(-1), FIRST.flip(-1))
    expected = (plain.step(frames[1]).probabilities + mirror.step(frames[1].flip(-1)).probabilities.flip(-1)) / 2
    torch.testing.assert_close(flip.step(frames[1]).probabilities, expected, atol=1e-4, rtol=1e-4)


def test_chunking_does_not_change_the_result(network) -> None:
    frames = images(4)
    mask = index_mask({1: (0, 0, 10, 10), 2: (12, 12, 25, 30), 3: (28, 30, 40, 56)})
    outputs = []
    for chunk_size in (-1, 1, 2):
        processor = VideoProcessor(network, InferenceConfig(chunk_size=chunk_size, mem_every=2))
        outputs.append([processor.step(f, mask if t == 0 else None).probabilities for t, f in enumerate(frames)])
    for other in outputs[1:]:
        for a, b in zip(outputs[0], other):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_max_internal_size_processes_smaller_and_answers_at_full_size(network) -> None:
    processor = VideoProcessor(network, InferenceConfig(max_internal_size=20))
    big = torch.rand(3, 80, 120)
    mask = torch.zeros(80, 120, dtype=torch.int64)
    mask[10:50, 20:90] = 4
    out = processor.step(big, mask)
    assert processor.padded_size == (32, 32)  # 80x120 -> 20x30 -> padded to 32x32
    assert out.probabilities.shape == (2, 80, 120)
    agreement = (out.id_mask() == mask).float().mean()
    assert agreement > 0.95  # boundary pixels move by up to half a working pixel through the 4x round trip
    assert processor.step(torch.rand(3, 80, 120)).probabilities.shape == (2, 80, 120)


def test_a_given_index_mask_is_resized_nearest_neighbour_and_stays_binary(network) -> None:
    """As the authors' evaluation (PIL nearest): the working-size mask is the id map sampled at the
    working pixels' centres, never a blend."""
    processor = VideoProcessor(network, InferenceConfig(max_internal_size=20))
    mask = torch.zeros(80, 120, dtype=torch.int64)
    mask[10:50, 21:90] = 4
    processor.step(torch.rand(3, 80, 120), mask)
    assert processor.last_mask is not None
    left, right, top, bottom = processor._pads
    working = processor.last_mask[0, 0, top : 32 - bottom, left : 32 - right]
    centres_y, centres_x = (torch.arange(20) * 4 + 2), (torch.arange(30) * 4 + 2)  # (i + 0.5) * 4
    expected = (mask[centres_y][:, centres_x] == 4).float()
    assert torch.all((working < 1e-6) | (working > 1 - 1e-6))  # binary up to the aggregation's clamp
    assert torch.equal(working.round(), expected)


def test_the_working_size_truncates_the_longer_side_as_torchvision() -> None:
    assert internal_size(720, 1280, 600) == (600, 1066)  # 1066.67: torchvision's Resize(600) gives 1066
    assert internal_size(1080, 1920, 480) == (480, 853)
    assert internal_size(480, 854, 480) == (480, 854)  # never upscaled, never touched at the size
    assert internal_size(1280, 720, -1) == (1280, 720)


def test_bad_inputs_fail_with_a_message(network) -> None:
    processor = VideoProcessor(network, InferenceConfig())
    with pytest.raises(ValueError, match="image must be"):
        processor.step(torch.rand(H, W))
    with pytest.raises(ValueError, match="mask size"):
        processor.step(torch.rand(3, H, W), torch.zeros(H + 1, W, dtype=torch.int64))
    with pytest.raises(ValueError, match="need `objects`"):
        processor.step(torch.rand(3, H, W), torch.zeros(2, H, W))
    processor = VideoProcessor(network, InferenceConfig())
    processor.step(torch.rand(3, H, W), FIRST)
    with pytest.raises(ValueError, match="frame size changed"):
        processor.step(torch.rand(3, 100, 100))


# ---------------------------------------------------------------- controls between frames
def run_video(processor: VideoProcessor, frames: list[torch.Tensor]) -> list[torch.Tensor]:
    return [processor.step(frames[0], FIRST).probabilities] + [processor.step(f).probabilities for f in frames[1:]]


def test_clear_memory_starts_a_new_video(network) -> None:
    frames = images(4)
    fresh = run_video(VideoProcessor(network, InferenceConfig(mem_every=1)), frames)
    reused = VideoProcessor(network, InferenceConfig(mem_every=1))
    run_video(reused, images(3, seed=1))
    reused.clear_memory()
    assert reused.object_ids == [] and reused.memory.num_tokens == 0 and reused.frame_index == -1
    for a, b in zip(fresh, run_video(reused, frames)):
        assert torch.equal(a, b)


def test_clear_non_permanent_memory_keeps_the_first_frame_only(network) -> None:
    processor = VideoProcessor(network, InferenceConfig(mem_every=1, memorise_empty_frames=True))
    run_video(processor, images(4))
    per_frame = processor.memory.tokens_per_frame
    assert processor.memory.num_tokens == 4 * per_frame
    processor.clear_non_permanent_memory()
    assert processor.memory.num_tokens == processor.memory.num_permanent_tokens() == per_frame
    assert processor.object_ids == [5, 17]
    processor.step(images(1, seed=3)[0])  # still segments from the permanent frame
    assert processor.memory.num_tokens == 2 * per_frame


def test_clear_sensory_memory_zeroes_every_state(network) -> None:
    processor = VideoProcessor(network, InferenceConfig())
    run_video(processor, images(3))
    assert any(state.abs().sum() > 0 for state in processor.sensory.states.values())
    processor.clear_sensory_memory()
    assert sorted(processor.sensory.states) == [5, 17]
    assert all(state.abs().sum() == 0 for state in processor.sensory.states.values())


def test_update_config_changes_the_schedule_mid_video(network) -> None:
    processor = VideoProcessor(network, InferenceConfig(mem_every=5, memorise_empty_frames=True))
    frames = images(6)
    processor.step(frames[0], FIRST)
    assert not processor.step(frames[1]).memorised
    processor.update_config(mem_every=1, top_k=5)
    assert processor.config.top_k == 5 and processor.memory.config.mem_every == 1
    assert processor.step(frames[2]).memorised and processor.step(frames[3]).memorised


def test_update_config_refuses_what_cannot_change_mid_video(network) -> None:
    processor = VideoProcessor(network, InferenceConfig())
    processor.update_config(flip_aug=True)  # before the first frame: allowed
    processor.step(images(1)[0], FIRST)
    with pytest.raises(ConfigError, match="inference.flip_aug: cannot change in the middle of a video"):
        processor.update_config(flip_aug=False)
    with pytest.raises(ConfigError, match="inference.top_k must be > 0"):
        processor.update_config(top_k=0)
    with pytest.raises(ConfigError, match="inference.topk: unknown key"):
        processor.update_config(topk=3)
    assert processor.config.flip_aug and processor.config.top_k == 30


# ---------------------------------------------------------------- precision
def test_bf16_runs_on_the_cpu_close_to_fp32(network) -> None:
    frames = images(4)
    fp32 = run_video(VideoProcessor(network, InferenceConfig(mem_every=1)), frames)
    bf16 = run_video(VideoProcessor(network, InferenceConfig(mem_every=1, precision="bf16")), frames)
    for a, b in zip(fp32[1:], bf16[1:]):
        assert b.dtype == torch.float32 and not torch.equal(a, b)  # bf16 really ran
        assert (a - b).abs().max() < 0.1


def test_fp16_needs_cuda(network) -> None:
    with pytest.raises(ValueError, match="inference.precision=fp16 needs a CUDA device"):
        VideoProcessor(network, InferenceConfig(precision="fp16"))


# ---------------------------------------------------------------- object groups
def test_objects_given_on_different_frames_are_fused_and_queried_per_bucket(network, monkeypatch) -> None:
    """The authors' grouping (default): pixel fusion and the query transformer see the objects of one
    memory bucket at a time; the decoder sees every object. ``object_groups="all"`` fuses them together."""
    frames = images(4)
    late = index_mask({9: (24, 2, 38, 20)})
    calls: list[int] = []
    original = network.read_object_queries

    def counting(pixel_readout, object_memory, **kwargs):
        calls.append(pixel_readout.shape[1])
        return original(pixel_readout, object_memory, **kwargs)

    monkeypatch.setattr(network, "read_object_queries", counting)
    outputs = {}
    for groups in ("bucket", "all"):
        processor = VideoProcessor(network, InferenceConfig(object_groups=groups))
        processor.step(frames[0], index_mask({5: (2, 2, 20, 20)}))
        processor.step(frames[1])
        processor.step(frames[2], late, objects=[9])
        calls.clear()
        outputs[groups] = processor.step(frames[3])
        assert outputs[groups].object_ids == [5, 9]
        assert calls == ([1, 1] if groups == "bucket" else [2])
    assert InferenceConfig().object_groups == "bucket"
    assert not torch.allclose(outputs["bucket"].probabilities, outputs["all"].probabilities)


def test_objects_given_together_form_one_group_either_way(network) -> None:
    frames = images(3)
    results = []
    for groups in ("bucket", "all"):
        processor = VideoProcessor(network, InferenceConfig(object_groups=groups))
        results.append(run_video(processor, frames))
    for a, b in zip(*results):
        assert torch.equal(a, b)
