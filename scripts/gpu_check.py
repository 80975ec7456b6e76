"""What a GPU does with S3, in one run of under ten minutes: inference frames per second of s3_vitb
and cutie_base at 480p in fp32/bf16/fp16 with and without torch.compile, a training step of s3_vitb
(480 crops, batch 4 x 8 frames) with fp16+GradScaler and with bf16, and a one-process NCCL DDP step.

    python scripts/gpu_check.py
    python scripts/gpu_check.py compile=false budget_s=300
Options: configs/gpu_check.yaml (key=value overrides, as every script).
"""

from __future__ import annotations

import sys

from s3.run.cli import run_job
from s3.run.gpu_check import gpu_check_from_args, report

if __name__ == "__main__":
    print(report(run_job(lambda: gpu_check_from_args(sys.argv[1:]))))
