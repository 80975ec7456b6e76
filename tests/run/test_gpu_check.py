"""The GPU check's code paths on the CPU (tiny model, tiny sizes, gloo instead of NCCL, the eager
compile backend); the check itself is run on a GPU."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist

from s3.config import ConfigError, compose
from s3.config.jobs import GpuCheckConfig, job_config
from s3.run.gpu_check import gpu_check, gpu_check_from_args, report

TINY_CPU = [
    "device=cpu",
    "models=[s3_tiny]",
    "precisions=[fp32]",
    "size=64",
    "repeats=1",
    "train_model=s3_tiny",
    "train_crop=64",
    "train_batch=2",
    "train_frames=3",
    "train_precisions=[bf16]",
    "train_steps=1",
    "compile_backend=eager",
    "threads=1",
]


def test_every_section_runs_on_the_cpu() -> None:
    result = gpu_check(job_config(compose("gpu_check", TINY_CPU), GpuCheckConfig))
    eager = [t for t in result.inference if not t.compiled]
    compiled = [t for t in result.inference if t.compiled]
    assert [(t.model, t.precision) for t in eager] == [("s3_tiny", "fp32")] and eager[0].fps > 0
    assert len(compiled) == 1 and compiled[0].fps is not None and compiled[0].fps > 0, compiled[0].note
    (step,) = result.training
    assert step.precision == "bf16" and step.seconds_per_step > 0 and torch.isfinite(torch.tensor(step.loss))
    assert step.peak_memory_gib is None  # CUDA only
    assert result.ddp is not None and result.ddp.backend == "gloo" and result.ddp.gradients_ok
    assert not dist.is_initialized()  # the one-process group is closed again
    text = report(result)
    assert "s3_tiny" in text and "compiled fps" in text and "DDP, one process (gloo)" in text


def test_compiled_timings_past_the_budget_are_skipped() -> None:
    cfg = job_config(compose("gpu_check", [*TINY_CPU, "budget_s=0.001", "train_precisions=[]", "ddp=false"]), GpuCheckConfig)
    result = gpu_check(cfg)
    compiled = [t for t in result.inference if t.compiled]
    assert [t.note.split(":")[0] for t in compiled] == ["skipped"] and compiled[0].fps is None
    assert "skipped" in report(result)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_refuses_cuda_without_a_gpu() -> None:
    with pytest.raises(ConfigError, match="^device=cuda: no CUDA device is available"):
        gpu_check_from_args([])


def test_settings_that_cannot_run_fail_naming_the_key() -> None:
    with pytest.raises(ConfigError, match=r"^precisions\[2\]=fp16 needs device=cuda"):
        GpuCheckConfig(device="cpu")
    with pytest.raises(ConfigError, match=r"^train_frames must be >= 2"):
        GpuCheckConfig(train_frames=1)
