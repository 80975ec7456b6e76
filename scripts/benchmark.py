"""Time one inference step of a model config on a random frame.

    python scripts/benchmark.py model=s3_vitb
    python scripts/benchmark.py model=cutie_base device=cuda amp=bf16 repeats=20
"""

from __future__ import annotations

import platform

import hydra
import torch
from omegaconf import DictConfig

from s3.config import register_configs, to_model_config
from s3.model.benchmark import time_inference_step
from s3.model.build import build_network

register_configs()

AMP_DTYPES = {"none": None, "fp16": torch.float16, "bf16": torch.bfloat16}


@hydra.main(config_path="../configs", config_name="benchmark", version_base="1.3")
def main(cfg: DictConfig) -> None:
    if cfg.amp not in AMP_DTYPES:
        raise SystemExit(f"amp={cfg.amp!r} is not one of {sorted(AMP_DTYPES)}")
    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    torch.manual_seed(int(cfg.seed))
    model_cfg = to_model_config(cfg.model)
    network = build_network(model_cfg).to(cfg.device)
    timing = time_inference_step(
        network,
        tuple(cfg.frame_size),
        int(cfg.num_objects),
        repeats=int(cfg.repeats),
        warmup=int(cfg.warmup),
        amp_dtype=AMP_DTYPES[cfg.amp],
    )
    where = torch.cuda.get_device_name() if cfg.device == "cuda" else f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    h, w = cfg.frame_size
    print(f"model={model_cfg.name} frame={h}x{w} objects={cfg.num_objects} device={cfg.device} ({where}) amp={cfg.amp}")
    print(f"inference step: median {timing.median:.3f} s ({timing.fps:.2f} fps) over {len(timing.seconds)} runs: "
          + ", ".join(f"{s:.3f}" for s in timing.seconds))
    if timing.peak_memory_mib is not None:
        print(f"peak CUDA memory: {timing.peak_memory_mib:.0f} MiB")


if __name__ == "__main__":
    main()
