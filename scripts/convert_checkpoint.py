"""Convert a whole S3 checkpoint (e.g. the authors' release) to our layout, checked strictly
against the configured model before anything is written.

    python scripts/convert_checkpoint.py src=s3_official.pth out=checkpoints/s3_vitb.pth
"""

from __future__ import annotations

from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig

from s3.config import register_configs, to_model_config
from s3.model.network import S3Network
from s3.model.weights import CheckpointError, atomic_save, load_network_weights

register_configs()


@hydra.main(config_path="../configs", config_name="convert_checkpoint", version_base="1.3")
def main(cfg: DictConfig) -> None:
    src, out = Path(cfg.src), Path(cfg.out)
    if out.resolve() == src.resolve():
        raise SystemExit(f"error: out={out} would overwrite src")
    with torch.device("meta"):
        network = S3Network(to_model_config(cfg.model))
    network = network.to_empty(device="cpu")
    try:
        layout = load_network_weights(network, str(src), key="src")
    except CheckpointError as err:
        raise SystemExit(f"error: {err}") from None
    state = network.trainable_state_dict() if cfg.drop_vit else network.state_dict()
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_save(state, out)
    print(f"read {src} ({layout} layout), wrote {len(state)} tensors in our layout to {out}")


if __name__ == "__main__":
    main()
