"""Evaluate a model on a benchmark preset: predictions, submission archive, FPS and local scores.

    python scripts/eval.py dataset=davis17 weights=<checkpoint>
    python scripts/eval.py dataset=ytvos19 weights=<checkpoint> plus=true exp_id=s3_plus
    python scripts/eval.py dataset=generic dataset.image_dir=<frames> dataset.mask_dir=<masks> weights=<ckpt>
    torchrun --nproc_per_node=4 scripts/eval.py dataset=mose weights=<checkpoint>
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig

from s3.config import ConfigError, register_configs, to_model_config
from s3.config.eval import to_eval_config
from s3.eval.datasets import DatasetError
from s3.inference.evaluation import RunFolderError, distributed_rank, run_evaluation, select_device
from s3.model.build import build_network
from s3.model.weights import CheckpointError

register_configs()


@hydra.main(config_path="../configs", config_name="eval", version_base="1.3")
def main(cfg: DictConfig) -> None:
    try:
        eval_cfg = to_eval_config(cfg)
        model_cfg = to_model_config(cfg.model)
        if eval_cfg.weights:
            model_cfg = dataclasses.replace(model_cfg, weights=eval_cfg.weights)
        if eval_cfg.threads:
            torch.set_num_threads(eval_cfg.threads)
        torch.manual_seed(eval_cfg.seed)
        network = build_network(model_cfg).to(select_device(eval_cfg.device))
        report = run_evaluation(eval_cfg, network, Path(eval_cfg.output_dir))
    except (ConfigError, DatasetError, RunFolderError, CheckpointError) as err:
        raise SystemExit(f"error: {err}") from None
    if distributed_rank()[0] == 0:
        if not model_cfg.weights:
            print("weights=null: the network has random weights")
        print(f"model={model_cfg.name} dataset={eval_cfg.dataset.name} protocol={eval_cfg.protocol().as_dict()}")
        print(report.format())


if __name__ == "__main__":
    main()
