"""The model-table job behind ``scripts/model_summary.py``: per-module trainable and frozen
parameter counts of a model config, with the output shapes each module gives on a probe video.

The probe is two frames through the architecture's own streaming engine: the first with random
masks of ``num_objects`` objects (memorised), the second segmented from that memory. Modules that
only run in training (auxiliary heads) show no output shape.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from omegaconf import DictConfig
from torch import Tensor, nn

from s3.config import to_model_config
from s3.config.inference import InferenceConfig
from s3.config.jobs import ModelTableConfig, job_config
from s3.run.architectures import build_model, make_processor
from s3.run.runtime import process_runtime

NOT_RUN = "- (not run at inference)"


@dataclass
class ModuleRow:
    name: str
    trainable: int
    frozen: int
    output_shapes: list[str] = field(default_factory=list)


@dataclass
class ModelTable:
    rows: list[ModuleRow]
    input_size: tuple[int, int]
    padded_size: tuple[int, int]
    num_objects: int
    seconds_per_frame: float

    @property
    def trainable(self) -> int:
        return sum(r.trainable for r in self.rows)

    @property
    def frozen(self) -> int:
        return sum(r.frozen for r in self.rows)

    def format(self) -> str:
        """A plain-text table: one line per top-level module (and the frozen ViT inside the encoder)."""
        head = f"{'module':<28}{'trainable':>14}{'frozen':>14}  output shapes"
        lines = [head, "-" * len(head)]
        for r in self.rows:
            shapes = "; ".join(r.output_shapes) if r.output_shapes else NOT_RUN
            lines.append(f"{r.name:<28}{r.trainable:>14,}{r.frozen:>14,}  {shapes}")
        lines.append("-" * len(head))
        lines.append(f"{'total':<28}{self.trainable:>14,}{self.frozen:>14,}")
        h, w = self.input_size
        ph, pw = self.padded_size
        lines.append(
            f"probe: {h}x{w} frames (padded to {ph}x{pw}), {self.num_objects} objects; "
            f"segmenting one frame from memory took {self.seconds_per_frame:.2f} s"
        )
        return "\n".join(lines)


def _describe(output: object) -> list[str]:
    if isinstance(output, Tensor):
        return [str(tuple(output.shape))]
    if dataclasses.is_dataclass(output) and not isinstance(output, type):
        return [s for f in dataclasses.fields(output) for s in _describe(getattr(output, f.name))]
    if isinstance(output, (list, tuple)):
        return [s for item in output for s in _describe(item)]
    if isinstance(output, dict):
        return [f"{k}:{s}" for k, v in output.items() for s in _describe(v)]
    return []


def _counts(module: nn.Module) -> tuple[int, int]:
    trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in module.parameters() if not p.requires_grad)
    return trainable, frozen


def model_table(
    network: nn.Module, model_cfg: Any, frame_size: tuple[int, int], num_objects: int, seed: int = 0
) -> ModelTable:
    """Count parameters per top-level module of ``network`` and record each module's first output
    shapes on the two-frame probe (see the module docstring)."""
    generator = torch.Generator().manual_seed(seed)
    device = next(network.parameters()).device
    h, w = frame_size
    frames = torch.rand(2, 3, h, w, generator=generator).to(device)
    first_mask = torch.randint(0, num_objects + 1, (h, w), generator=generator).to(device)

    modules: dict[str, nn.Module] = dict(network.named_children())
    vit = getattr(getattr(network, "pixel_encoder", None), "vit", None)
    if isinstance(vit, nn.Module):  # the frozen ViT gets its own row; the encoder row counts the adapter
        modules = {"pixel_encoder.vit": vit, **modules}
    rows = {name: ModuleRow(name, *_counts(m)) for name, m in modules.items()}
    if isinstance(vit, nn.Module):
        encoder = rows["pixel_encoder"]
        encoder.trainable -= rows["pixel_encoder.vit"].trainable
        encoder.frozen -= rows["pixel_encoder.vit"].frozen

    hooked = dict(modules)
    if isinstance(vit, nn.Module):  # the encoder drives the ViT block by block: report its last block
        hooked["pixel_encoder.vit"] = vit.blocks[-1]
    hooks = []
    for name, module in hooked.items():

        def record(_m: nn.Module, _inputs: object, output: object, name: str = name) -> None:
            if not rows[name].output_shapes:  # keep the first call's shapes
                rows[name].output_shapes = _describe(output)

        hooks.append(module.register_forward_hook(record))
    processor = make_processor(network, model_cfg, InferenceConfig())
    try:
        processor.step(frames[0], first_mask)
        start = time.perf_counter()
        processor.step(frames[1])
        elapsed = time.perf_counter() - start
    finally:
        for hook in hooks:
            hook.remove()
    return ModelTable(
        rows=list(rows.values()),
        input_size=(h, w),
        padded_size=tuple(processor.padded_size),
        num_objects=num_objects,
        seconds_per_frame=elapsed,
    )


def model_table_from_config(node: DictConfig) -> tuple[Any, ModelTable]:
    """The job on a composed ``model_summary`` config: (model config, table), on the CPU."""
    model_cfg = to_model_config(node.model)
    cfg: ModelTableConfig = job_config(node, ModelTableConfig, leave_out=("model",))
    with process_runtime("cpu", cfg.threads):
        torch.manual_seed(cfg.seed)
        network = build_model(model_cfg)
        return model_cfg, model_table(network, model_cfg, (cfg.frame_size[0], cfg.frame_size[1]), cfg.num_objects, cfg.seed)
