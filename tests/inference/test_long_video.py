"""A 1000-frame video with long-term memory: bounded, flat memory (what keeps the per-frame cost flat;
speed itself is measured by scripts/benchmark.py, never here), objects that come and go."""

from __future__ import annotations

import torch

from s3.config import load_model_config
from s3.config.inference import InferenceConfig, LongTermConfig
from s3.inference.processor import VideoProcessor
from s3.model.build import build_network

NUM_FRAMES = 1000
SIZE = 32  # one 2x2 token grid per frame at stride 16


def test_long_video_memory_stays_bounded_and_flat() -> None:
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: one thread is faster and far steadier on shared cores
    try:
        run_long_video()
    finally:
        torch.set_num_threads(previous_threads)


def run_long_video() -> None:
    torch.manual_seed(0)
    network = build_network(load_model_config("s3_tiny")).eval()
    long_term = LongTermConfig(max_mem_frames=5, min_mem_frames=2, num_prototypes=3, max_num_tokens=24, buffer_tokens=6)
    config = InferenceConfig(mem_every=2, use_long_term=True, long_term=long_term, memorise_empty_frames=True)
    processor = VideoProcessor(network, config)
    generator = torch.Generator().manual_seed(0)
    first = torch.zeros(SIZE, SIZE, dtype=torch.int64)
    first[2:14, 2:14], first[18:30, 18:30] = 3, 8
    late = torch.zeros(SIZE, SIZE, dtype=torch.int64)
    late[4:28, 20:30] = 21

    tokens = []  # memory tokens after each frame: what a readout has to search
    max_long_term = 0
    for t in range(NUM_FRAMES):
        image = torch.rand(3, SIZE, SIZE, generator=generator)
        mask = first if t == 0 else late if t == 300 else None
        if t == 600:
            processor.remove_objects([3])
        out = processor.step(image, mask, end=t == NUM_FRAMES - 1)

        memory = processor.memory
        tokens.append(memory.num_tokens)
        assert memory.num_tokens - memory.num_permanent_tokens() <= memory.token_budget()
        assert memory.num_permanent_tokens() == len(memory.buckets) * memory.tokens_per_frame
        for bucket in memory.buckets:
            if bucket.long_term is not None:
                max_long_term = max(max_long_term, bucket.long_term.size)
                assert bucket.long_term.size <= long_term.max_num_tokens
        expected_ids = [3, 8] if t < 300 else [3, 8, 21] if t < 600 else [8, 21]
        assert out.object_ids == expected_ids and out.probabilities.shape == (len(expected_ids) + 1, SIZE, SIZE)

    assert [b.object_ids for b in processor.memory.buckets] == [[8], [21]]
    assert max_long_term >= long_term.max_num_tokens - long_term.num_prototypes  # pruning was exercised
    # flat: with the same objects, the last 300 frames never hold more memory than frames 400-600 did
    # (two buckets both times: object 3 left bucket [3, 8] at frame 600)
    assert max(tokens[-300:]) <= max(tokens[400:600])
    assert max(tokens[50:300]) < max(tokens[400:600])  # the late object's bucket is memory too
