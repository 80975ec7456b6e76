"""Every row of the paper's Tables 1-2 is a command-line override (the README's table), and each one
changes what it should: the modules built, what STML is given in training and in the engine."""

from __future__ import annotations

import pytest
import torch
from stma_helpers import stma_config, tiny_network

from s3.config.inference import InferenceConfig
from s3.stma.clip_model import STMAClipModel
from s3.stma.convvit import ConvViT, PlainViT
from s3.stma.network import STMANetwork
from s3.stma.processor import STMAVideoProcessor

# paper row -> (model config, overrides); the same table is in the README
ABLATIONS: dict[str, tuple[str, list[str]]] = {
    "Table 1 Full version / Table 2 ConvViTb MAE": ("stma_convvitb", ["model.backbone.weights=<ConvMAE checkpoint>"]),
    "Table 1 W/O Obj": ("stma_convvitb", ["model.stml.objects=false"]),
    "Table 1 W/O Spatial Memory": ("stma_convvitb", ["model.stml.references=false"]),
    "Table 1 W/O Temporal Memory": (
        "stma_convvitb",
        ["model.id_association=per_object", "model.stml.objects=false", "model.reference_mask_embed=true"],
    ),
    "Table 1 Joint Self-Attn": ("stma_convvitb", ["model.stml.attention=joint"]),
    "Table 2 ConvViTb Scratch": ("stma_convvitb", ["model.backbone.weights=null"]),
    "Table 2 ViTb MAE": ("stma_vitb", ["model.backbone.weights=<MAE checkpoint>"]),
    "Table 2 ViTb MOCOV3": ("stma_vitb", ["model/stma_backbone=mocov3_vitb16", "model.backbone.weights=<MoCo v3 checkpoint>"]),
}


def composable(overrides: list[str]) -> list[str]:
    """The overrides without placeholder weight files (no checkpoint is available here)."""
    return [o for o in overrides if "<" not in o]


@pytest.mark.parametrize("row", list(ABLATIONS))
def test_every_row_composes_and_builds(row: str) -> None:
    name, overrides = ABLATIONS[row]
    cfg = stma_config(name, composable(overrides))
    with torch.device("meta"):
        net = STMANetwork(cfg)
    backbone = PlainViT if name == "stma_vitb" else ConvViT
    assert isinstance(net.pixel_encoder, backbone) and (net.pyramid is not None) == (name == "stma_vitb")
    assert (net.object_tokenizer is None) == (row in ("Table 1 W/O Obj", "Table 1 W/O Temporal Memory"))
    memory_parts = (net.key_proj, net.mask_encoder, net.pixel_fuser)
    assert all(part is None for part in memory_parts) == (row == "Table 1 W/O Temporal Memory")
    assert cfg.stml.references == (row != "Table 1 W/O Spatial Memory")
    assert cfg.stml.attention == ("joint" if row == "Table 1 Joint Self-Attn" else "decomposed")
    expected_format = "mocov3" if "MOCOV3" in row else {"stma_convvitb": "convmae", "stma_vitb": "mae"}[name]
    assert cfg.backbone.weights_format == expected_format and cfg.backbone.weights is None


TINY_ROWS = {
    "full": [],
    "no_objects": ["model.stml.objects=false"],
    "no_spatial_memory": ["model.stml.references=false"],
    "joint": ["model.stml.attention=joint"],
}


def clip() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    frames = torch.rand(1, 4, 3, 48, 64, generator=g)
    labels = torch.zeros(1, 48, 64, dtype=torch.int64)
    labels[0, 4:20, 4:30], labels[0, 26:44, 30:60] = 1, 2
    return frames, labels, torch.ones(1, 2)


@pytest.mark.parametrize("variant", list(TINY_ROWS))
def test_what_stml_is_given_in_training_and_in_the_engine(
    variant: str, monkeypatch: pytest.MonkeyPatch, one_thread: None
) -> None:
    net = tiny_network(TINY_ROWS[variant], seed=8)
    contexts = []
    original = net.prepare_context

    def prepare_context(*args, **kwargs):
        context = original(*args, **kwargs)
        contexts.append(context)
        return context

    monkeypatch.setattr(net, "prepare_context", prepare_context)
    frames, labels, selector = clip()
    with torch.no_grad():
        STMAClipModel(net, 2)(frames, labels, selector, torch.Generator().manual_seed(0))
        engine = STMAVideoProcessor(net, InferenceConfig(mem_every=1))
        engine.step(frames[0, 0], labels[0])
        for t in range(1, 4):
            engine.step(frames[0, t])
    assert len(contexts) == 3 + 3  # frames 1-3 of the clip, then of the video
    for context in contexts:
        assert (context.objects is None) == (variant == "no_objects")
        assert (context.references is None) == (variant == "no_spatial_memory")
        assert (context.streams is None) == (variant == "joint")  # joint: one attention, no cached streams
    assert (len(engine.spatial_memory) == 0) == (variant == "no_spatial_memory")
