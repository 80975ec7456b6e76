"""Time the streaming engine of a model config with a full memory, on random frames.

    python scripts/benchmark.py model=s3_vitb
    python scripts/benchmark.py model=cutie_base device=cuda precision=bf16 repeats=20
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from s3.config import register_configs
from s3.run.benchmark import benchmark_from_config
from s3.run.cli import run_job

register_configs()


@hydra.main(config_path="../configs", config_name="benchmark", version_base="1.3")
def main(cfg: DictConfig) -> None:
    model_cfg, settings, timing = run_job(lambda: benchmark_from_config(cfg))
    h, w = settings.frame_size
    print(f"model={model_cfg.name} frame={h}x{w} objects={settings.num_objects} device={settings.device} "
          f"({timing.device}) precision={settings.precision}")
    print(f"steady-state step: median {timing.median:.3f} s ({timing.fps:.2f} fps) over {len(timing.seconds)} "
          "frames: " + ", ".join(f"{s:.3f}" for s in timing.seconds))
    if timing.peak_memory_mib is not None:
        print(f"peak CUDA memory: {timing.peak_memory_mib:.0f} MiB")


if __name__ == "__main__":
    main()
