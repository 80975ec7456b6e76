"""The benchmark job's code paths on a tiny model (speed itself is measured by running
scripts/benchmark.py, never here): steady state side by side with a profile, a long video, the
module timer and the config checks."""

from __future__ import annotations

import time

import pytest
import torch
from torch import nn

from s3.config import ConfigError, compose
from s3.config.jobs import BenchmarkConfig
from s3.run.benchmark import (
    OTHER_ROW,
    PROFILE_MODULES,
    ModuleTimer,
    benchmark_from_config,
    count_gflop,
    frame_shape,
    report,
)

TINY = ["model=s3_tiny", "size=64", "threads=1", "gemm_probe=false"]


def test_frame_shape_follows_the_aspect() -> None:
    assert frame_shape(480, 1.8) == (480, 864)
    assert frame_shape(240, 1.8) == (240, 432)


def test_steady_state_times_each_precision_side_by_side_with_a_profile() -> None:
    result = benchmark_from_config(compose("benchmark", [*TINY, "repeats=6", "profile=true", "precisions=[fp32,bf16]"]))
    assert [run.precision for run in result.runs] == ["fp32", "bf16"]
    for run in result.runs:
        assert len(run.seconds) == 6 and all(s > 0 for s in run.seconds)
        assert sum(run.memorised) == 1  # a memory frame every 5th frame, as in evaluation
        assert run.gflop is not None and run.gflop > 0
        assert list(run.profile) == [*PROFILE_MODULES, OTHER_ROW]
        assert run.profile["frozen ViT"] > 0 and run.profile["deformable attention"] > 0
        assert run.profile["memory readout"] > 0 and run.profile["mask encoder + summarizer"] > 0
        assert run.profile["pixel encoder (ResNet-50)"] == 0.0  # s3_tiny has none
        assert sum(run.profile.values()) == pytest.approx(1000 * sum(run.seconds) / 6, rel=1e-6)
    text = report(result)
    assert "median s/frame" in text and "per-module time" in text and "frozen ViT" in text and "bf16" in text


def test_long_video_reports_windows_and_resident_memory() -> None:
    result = benchmark_from_config(compose("benchmark", [*TINY, "frames=7", "window=3", "long_term=true", "precisions=[bf16]"]))
    (run,) = result.runs
    assert len(run.seconds) == 7 and run.memorised[0]
    assert len(result.rss_mib) == 3 and all(rss > 0 for rss in result.rss_mib)  # frames 1-3, 4-6, 7
    assert len(run.memory_tokens) == 3 and run.memory_tokens[-1] >= run.memory_tokens[0] > 0
    text = report(result)
    assert "1-3" in text and "7-7" in text and "RSS" in text and "max/min" in text


def test_module_timer_counts_the_outermost_timed_call_only() -> None:
    timer = ModuleTimer(torch.device("cpu"))
    inner, outer = nn.Identity(), nn.Sequential(nn.Identity())
    timer.watch(outer, "outer")
    timer.watch(outer[0], "inner")
    timer.watch(inner, "inner")
    slow = timer.timed("slow", lambda: time.sleep(0.01))
    outer(torch.zeros(1))
    assert not timer.seconds  # inactive: nothing recorded
    timer.active = True
    outer(torch.zeros(1))
    assert set(timer.seconds) == {"outer"}  # the nested "inner" module is part of it
    inner(torch.zeros(1))
    slow()
    assert set(timer.seconds) == {"outer", "inner", "slow"}
    assert timer.seconds["slow"] >= 0.01


def test_gflop_counter_counts_the_fused_cpu_attention() -> None:
    q = torch.randn(1, 2, 8, 4)
    expected = 2 * (2 * 2 * 8 * 8 * 4)  # QK^T and PV
    assert count_gflop(lambda: torch.nn.functional.scaled_dot_product_attention(q, q, q)) * 1e9 == expected


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"precisions": ["fp16"]}, r"^precisions\[0\]=fp16 needs device=cuda"),
        ({"precisions": []}, "precisions must name at least one"),
        ({"profile": True, "compile": True}, "^profile: "),
        ({"profile": True, "frames": 10}, "^profile: "),
        ({"size": 0}, "^size must be"),
    ],
)
def test_bad_settings_fail_naming_the_key(overrides: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        BenchmarkConfig(**overrides)


def test_automatic_precisions_time_bf16_only_where_it_is_native(monkeypatch: pytest.MonkeyPatch) -> None:
    import s3.run.benchmark as benchmark

    cpu = torch.device("cpu")
    monkeypatch.setattr(benchmark, "has_native_bf16", lambda device: False)
    assert benchmark.automatic_precisions(cpu) == ["fp32"]  # emulated bf16 is far slower than fp32
    monkeypatch.setattr(benchmark, "has_native_bf16", lambda device: True)
    assert benchmark.automatic_precisions(cpu) == ["fp32", "bf16"]
    result = benchmark_from_config(compose("benchmark", [*TINY, "repeats=1"]))
    assert [run.precision for run in result.runs] == ["fp32", "bf16"]
