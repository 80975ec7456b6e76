"""Where and how a job runs: the device and numeric-precision vocabularies every job shares."""

from __future__ import annotations

from s3.config.validation import ConfigError, check_choice

DEVICES = ("auto", "cpu", "cuda")  # auto: CUDA when available, else the CPU
# fp32: no autocast; bf16: autocast to bfloat16 (CPU and CUDA); fp16: autocast to float16 (CUDA only)
PRECISIONS = ("fp32", "bf16", "fp16")


def check_device(key: str, value: str) -> None:
    check_choice(key, value, DEVICES)


def check_precision(key: str, value: str) -> None:
    check_choice(key, value, PRECISIONS)


def check_threads(key: str, value: int) -> None:
    if value < 0:
        raise ConfigError(f"{key} must be >= 0 (0 = torch's default), got {value}")
