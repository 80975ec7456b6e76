"""Per-module parameter counts and output shapes of a network (``scripts/model_summary.py``)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from s3.model.network import S3Network
from s3.model.padding import pad_to_multiple


@dataclass
class ModuleRow:
    name: str
    trainable: int
    frozen: int
    output_shapes: list[str] = field(default_factory=list)


@dataclass
class NetworkSummary:
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
        """A plain-text table: one line per top-level module (and the ViT inside the encoder)."""
        head = f"{'module':<28}{'trainable':>14}{'frozen':>14}  output shapes"
        lines = [head, "-" * len(head)]
        for r in self.rows:
            shapes = "; ".join(r.output_shapes) if r.output_shapes else "-"
            lines.append(f"{r.name:<28}{r.trainable:>14,}{r.frozen:>14,}  {shapes}")
        lines.append("-" * len(head))
        lines.append(f"{'total':<28}{self.trainable:>14,}{self.frozen:>14,}")
        h, w = self.input_size
        ph, pw = self.padded_size
        lines.append(
            f"probe: one {h}x{w} frame (padded to {ph}x{pw}), {self.num_objects} objects; "
            f"segmenting one frame from memory took {self.seconds_per_frame:.2f} s"
        )
        return "\n".join(lines)


def _describe(output: object) -> list[str]:
    if isinstance(output, Tensor):
        return [str(tuple(output.shape))]
    if isinstance(output, (list, tuple)):
        return [s for item in output for s in _describe(item)]
    if isinstance(output, dict):
        return [f"{k}:{s}" for k, v in output.items() for s in _describe(v)]
    return []


def _counts(module: nn.Module) -> tuple[int, int]:
    trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in module.parameters() if not p.requires_grad)
    return trainable, frozen


@dataclass
class ProbeMemory:
    """Memory of one memorised frame, in the layout :meth:`S3Network.read_pixel_memory` takes."""

    key: Tensor  # (B, CK, M)
    shrinkage: Tensor  # (B, 1, M)
    value: Tensor  # (B, N, CV, M)
    summaries: Tensor  # (B, N, 1, Q, CV+1)
    sensory: Tensor  # (B, N, S, h, w)
    last_mask: Tensor  # (B, N, H, W)


def memorise_frame(network: S3Network, image: Tensor, masks: Tensor) -> ProbeMemory:
    """Encode ``image`` (B, 3, H, W) with ``masks`` (B, N, H, W) into a one-frame memory."""
    features = network.encode_image(image)
    key, shrinkage, _ = network.transform_key(features.f16, need_selection=False)
    sensory = network.zero_sensory(features, masks.shape[1])
    value, sensory, summaries = network.encode_mask(image, features.pix_feat, sensory, masks)
    return ProbeMemory(key.flatten(2), shrinkage.flatten(2), value.flatten(3), summaries.unsqueeze(2), sensory, masks)


def segment_frame(network: S3Network, image: Tensor, memory: ProbeMemory, need_aux: bool = False) -> Tensor:
    """One inference step on ``image`` from ``memory`` (top-30 readout) -> prob (B, N+1, H, W)."""
    features = network.encode_image(image)
    key, _, selection = network.transform_key(features.f16, need_shrinkage=False)
    readout, _ = network.read_pixel_memory(key, selection, memory.key, memory.shrinkage, memory.value, top_k=30)
    pixel = network.fuse_pixel_readout(features.pix_feat, readout, memory.sensory, memory.last_mask)
    pixel, aux = network.read_object_queries(pixel, memory.summaries, need_aux=need_aux)
    if need_aux:
        network.compute_aux(features.pix_feat, memory.sensory, aux)
    _, _, prob = network.segment(features, pixel, memory.sensory)
    return prob


def summarize(network: S3Network, frame_size: tuple[int, int], num_objects: int, seed: int = 0) -> NetworkSummary:
    """Count parameters per top-level module and record output shapes from a two-step probe:
    memorise a random frame with random masks, then segment the frame from that memory."""
    generator = torch.Generator().manual_seed(seed)
    h, w = frame_size
    image = torch.rand(1, 3, h, w, generator=generator)
    image, _ = pad_to_multiple(image, network.cfg.pad_multiple)
    masks = (torch.rand(1, num_objects, *image.shape[-2:], generator=generator) > 0.5).float()

    modules: dict[str, nn.Module] = dict(network.named_children())
    vit = getattr(network.pixel_encoder, "vit", None)
    if vit is not None:
        modules = {"pixel_encoder.vit": vit, **modules}
    rows = {name: ModuleRow(name, *_counts(m)) for name, m in modules.items()}
    if vit is not None:  # the encoder row counts the adapter only
        enc = rows["pixel_encoder"]
        enc.trainable -= rows["pixel_encoder.vit"].trainable
        enc.frozen -= rows["pixel_encoder.vit"].frozen

    hooks = []
    hooked = dict(modules)
    if vit is not None:  # the encoder drives the ViT block by block: report its last block's output
        hooked["pixel_encoder.vit"] = vit.blocks[-1]
    for name, module in hooked.items():
        def record(_m: nn.Module, _inputs: object, output: object, name: str = name) -> None:
            if not rows[name].output_shapes:  # keep the first call's shapes
                rows[name].output_shapes = _describe(output)

        hooks.append(module.register_forward_hook(record))
    network.eval()
    try:
        with torch.inference_mode():
            memory = memorise_frame(network, image, masks)
            start = time.perf_counter()
            segment_frame(network, image, memory, need_aux=True)
            elapsed = time.perf_counter() - start
    finally:
        for hook in hooks:
            hook.remove()
    return NetworkSummary(
        rows=list(rows.values()),
        input_size=(h, w),
        padded_size=tuple(image.shape[-2:]),
        num_objects=num_objects,
        seconds_per_frame=elapsed,
    )
