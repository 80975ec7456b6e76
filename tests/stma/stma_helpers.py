"""Shared helpers of the STMA tests (imported as ``from stma_helpers import ...``; pytest puts this
folder on ``sys.path``)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

from s3.config import compose
from s3.config.stma import STMAConfig
from s3.config.structured import to_dataclass
from s3.stma.network import FrameFeatures, STMANetwork

# A tiny plain-ViT STMA (the Table 2 ViT-B rows' code path at test size).
TINY_VIT = [
    "model/stma_backbone=mae_vitb16",
    "model.backbone.widths=[32]",
    "model.backbone.depths=[2]",
    "model.backbone.num_heads=2",
]
PER_OBJECT = ["model.id_association=per_object", "model.stml.objects=false", "model.reference_mask_embed=true"]


def stma_config(name: str = "stma_tiny", overrides: tuple[str, ...] | list[str] = ()) -> STMAConfig:
    """The validated ``configs/model/<name>.yaml`` with ``model.*`` overrides."""
    cfg = compose("model_summary", [f"model={name}", *overrides])
    return to_dataclass(cfg.model, STMAConfig, "model")


def tiny_network(overrides: tuple[str, ...] | list[str] = (), seed: int = 0) -> STMANetwork:
    torch.manual_seed(seed)
    return STMANetwork(stma_config("stma_tiny", overrides)).eval()


def random_masks(b: int, n: int, h: int, w: int, generator: torch.Generator) -> Tensor:
    """Disjoint one-hot masks (B, N, H, W) from a random label map with background."""
    labels = torch.randint(0, n + 1, (b, h, w), generator=generator)
    return torch.stack([(labels == k + 1).float() for k in range(n)], dim=1)


@dataclass
class Memory:
    """A caller-side memory as the clip model / processor will keep it."""

    tokens: Tensor  # (B, m, L, C) spatial memory
    masks: Tensor  # (B, m, N, H, W) their masks
    key: Tensor  # (B, CK, M)
    shrinkage: Optional[Tensor]  # (B, 1, M)
    value: Tensor  # (B, N, CV, M)


def memorise(net: STMANetwork, images: Tensor, masks: Tensor, object_valid: Optional[Tensor] = None) -> Memory:
    """Encode frames (T, B, 3, H, W) with their masks (T, B, N, H, W) into both memories, each
    frame associated with the frames before it (the first with none); object_valid (B, N) bool
    marks the real slots (None: all real)."""
    tokens, keys, shrinkages, values = [], [], [], []
    for t in range(images.shape[0]):
        stem = net.encode_stem(images[t])
        context = None
        if t:
            memory = Memory(
                torch.stack(tokens, 1),
                masks[:t].transpose(0, 1),
                torch.cat(keys, -1),
                None if shrinkages[0] is None else torch.cat(shrinkages, -1),
                torch.cat(values, -1),
            )
            context = frame_context(net, memory, object_valid)
        features = net.associate(stem, context)
        key, shrinkage, _ = net.transform_key(features.f16)
        tokens.append(stem.tokens)
        keys.append(key.flatten(2))
        shrinkages.append(None if shrinkage is None else shrinkage.flatten(2))
        values.append(net.encode_mask(images[t], features.pix_feat, masks[t]).flatten(3))
    return Memory(
        torch.stack(tokens, 1),
        masks.transpose(0, 1),
        torch.cat(keys, -1),
        None if shrinkages[0] is None else torch.cat(shrinkages, -1),
        torch.cat(values, -1),
    )


def frame_context(net: STMANetwork, memory: Memory, object_valid: Optional[Tensor] = None):
    objects = net.object_tokens(memory.value, object_valid)
    references = net.prepare_references(memory.tokens, memory.masks)
    return net.prepare_context(references, objects, object_valid)


def segment_frame(
    net: STMANetwork,
    image: Tensor,
    memory: Memory,
    object_valid: Optional[Tensor] = None,
    top_k: Optional[int] = 30,
) -> tuple[Tensor, Tensor, FrameFeatures]:
    """One memory-mode frame step -> logits (B, N+1, H, W), prob, features."""
    stem = net.encode_stem(image)
    features = net.associate(stem, frame_context(net, memory, object_valid))
    key, _, selection = net.transform_key(features.f16)
    readout, _ = net.read_memory(key, selection, memory.key, memory.shrinkage, memory.value, top_k=top_k)
    selector = None if object_valid is None else object_valid.float()
    logits, prob = net.segment(features, net.fuse(features.pix_feat, readout), selector)
    return logits, prob, features


def reference_sincos_table(height: int, width: int, dim: int) -> Tensor:
    """MAE's fixed 2-D sin-cos table written out entry by entry: (height * width, dim), row-major;
    the first half encodes the column, the second the row, each as [sin, cos] of q = dim / 4
    frequencies 10000^(-k / q)."""
    q = dim // 4
    table = torch.zeros(height * width, dim, dtype=torch.float64)
    for row in range(height):
        for col in range(width):
            for k in range(q):
                omega = 1.0 / 10000 ** (k / q)
                token = row * width + col
                table[token, k] = math.sin(col * omega)
                table[token, q + k] = math.cos(col * omega)
                table[token, 2 * q + k] = math.sin(row * omega)
                table[token, 3 * q + k] = math.cos(row * omega)
    return table.float()
