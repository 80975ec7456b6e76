"""Time the streaming engine of a model config: steady state with a full memory (fp32 next to the
faster precisions, a GEMM probe, optionally a per-module profile), or a long video.

    python scripts/benchmark.py model=s3_vitb profile=true
    python scripts/benchmark.py model=cutie_base device=cuda precisions=[fp32,bf16,fp16]
    python scripts/benchmark.py model=s3_tiny frames=1000 size=240 long_term=true
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from s3.config import register_configs
from s3.run.benchmark import benchmark_from_config, report
from s3.run.cli import run_job

register_configs()


@hydra.main(config_path="../configs", config_name="benchmark", version_base="1.3")
def main(cfg: DictConfig) -> None:
    print(report(run_job(lambda: benchmark_from_config(cfg))))


if __name__ == "__main__":
    main()
