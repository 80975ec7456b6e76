"""Whole-network checkpoints: the reference layout converts onto ours name-for-name and shape-for-shape."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import reference_dir

from s3.config import load_model_config
from s3.model.build import build_network
from s3.model.network import S3Network
from s3.model.weights import (
    CheckpointError,
    is_reference_layout,
    load_network_weights,
    reference_key_to_ours,
    reference_to_ours,
    state_fingerprint,
    trainable_state_dict,
)


def reference_entries() -> list[tuple[str, tuple[int, ...]]]:
    """(name, shape) of every entry of the official S3 state dict, from the shared TSV."""
    tsv = reference_dir() / "s3_reference_state_dict.tsv"
    if not tsv.is_file():
        pytest.fail(f"reference state-dict listing not found: {tsv}")
    rows = []
    for line in tsv.read_text().splitlines()[1:]:
        name, shape = line.split("\t")[:2]
        dims = tuple(int(d) for d in shape.strip("()").split(",") if d.strip())
        rows.append((name, dims))
    return rows


def synthetic_reference_checkpoint() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    out = {}
    for name, shape in reference_entries():
        if name.endswith("num_batches_tracked"):
            out[name] = torch.tensor(7)
        else:
            out[name] = torch.randn(*shape, generator=g)
    return out


@pytest.fixture(scope="module")
def s3_vitb() -> S3Network:
    torch.manual_seed(0)
    return S3Network(load_model_config("s3_vitb"))


def test_every_reference_entry_maps_to_exactly_one_of_ours(s3_vitb: S3Network) -> None:
    entries = reference_entries()
    assert len(entries) == 705
    ours = {k: tuple(v.shape) for k, v in s3_vitb.state_dict().items()}
    mapped = {reference_key_to_ours(name): shape for name, shape in entries}
    assert len(mapped) == len(entries), "two reference names map to the same name"
    assert sorted(set(mapped) - set(ours)) == []
    assert sorted(set(ours) - set(mapped)) == []
    wrong = [k for k in mapped if mapped[k] != ours[k]]
    assert wrong == []


def test_reference_checkpoint_loads_through_the_converter(s3_vitb: S3Network, tmp_path: Path) -> None:
    checkpoint = synthetic_reference_checkpoint()
    assert is_reference_layout(checkpoint)
    path = tmp_path / "s3_official.pth"
    torch.save({"model": checkpoint}, path)
    assert load_network_weights(s3_vitb, str(path)) == "reference"
    state = s3_vitb.state_dict()
    pairs = {
        "pixel_encoder.interactions.3.extra_extractors.1.attn.sampling_offsets.weight": (
            "pixel_encoder.blocks.3.units.2.deform_attn.offset_proj.weight"
        ),
        "pixel_encoder.interactions.0.read_from_cls.cross_attn.in_proj_weight": (
            "pixel_encoder.blocks.0.semantic_attn.attn.in_proj_weight"
        ),
        "pixel_encoder.vit_module.blocks.7.ls1.gamma": "pixel_encoder.vit.blocks.7.ls1.gamma",
        "key_proj.d_proj.weight": "key_proj.shrinkage_proj.weight",
        "object_transformer.blocks.4.read_from_pixel.final.weight": (
            "object_transformer.blocks.4.read_from_pixel.out_proj.weight"
        ),
        "object_transformer.blocks.2.pixel_ffn.conv.conv.weight": (
            "object_transformer.blocks.2.pixel_ffn.channel_gate.weight"
        ),
        "mask_decoder.up_16_8.out_conv.downsample.weight": "mask_decoder.up_16_8.skip.weight",
        "object_transformer.mask_pred.5.1.bias": "object_transformer.aux_heads.5.proj.bias",
        "mask_encoder.fuser.block2.conv.weight": "mask_encoder.fuser.block2.channel_gate.weight",
    }
    for ref_name, our_name in pairs.items():
        assert torch.equal(state[our_name], checkpoint[ref_name]), our_name


def test_our_layout_round_trips_and_the_vit_may_come_from_the_backbone_file(tmp_path: Path) -> None:
    cfg = load_model_config("s3_tiny")
    torch.manual_seed(1)
    source = S3Network(cfg)
    full = tmp_path / "full.pth"
    torch.save(source.state_dict(), full)
    eval_weights = tmp_path / "eval.pth"
    torch.save(trainable_state_dict(source), eval_weights)
    assert not any(k.startswith("pixel_encoder.vit.") for k in trainable_state_dict(source))

    torch.manual_seed(2)
    target = S3Network(cfg)
    assert load_network_weights(target, str(full)) == "ours"
    for k, v in source.state_dict().items():
        assert torch.equal(target.state_dict()[k], v), k

    with pytest.raises(CheckpointError, match="This file has no ViT weights: also set model.backbone.weights"):
        load_network_weights(S3Network(cfg), str(eval_weights))
    load_network_weights(S3Network(cfg), str(eval_weights), vit_already_loaded=True)


def test_build_network_reads_every_configured_file(tmp_path: Path) -> None:
    cfg = load_model_config("s3_tiny")
    torch.manual_seed(3)
    source = S3Network(cfg)
    vit_file = tmp_path / "vit.pth"
    torch.save(source.pixel_encoder.vit.state_dict(), vit_file)
    weights_file = tmp_path / "weights.pth"
    torch.save(trainable_state_dict(source), weights_file)
    built = build_network(
        load_model_config("s3_tiny", [f"model.backbone.weights={vit_file}", f"model.weights={weights_file}"])
    )
    for k, v in source.state_dict().items():
        assert torch.equal(built.state_dict()[k], v), k


def test_missing_whole_checkpoint_names_the_key(tmp_path: Path) -> None:
    cfg = load_model_config("s3_tiny", [f"model.weights={tmp_path / 'missing.pth'}"])
    with pytest.raises(CheckpointError, match=r"^model\.weights: file not found"):
        build_network(cfg)


def test_empty_and_non_finite_weight_files_name_the_file(tmp_path: Path) -> None:
    net = S3Network(load_model_config("s3_tiny"))
    (tmp_path / "empty.pth").touch()
    with pytest.raises(CheckpointError, match=r"^model\.weights: .*empty.pth is empty \(0 bytes\)"):
        load_network_weights(net, str(tmp_path / "empty.pth"))
    state, name = net.state_dict(), "mask_decoder.sensory_update.transform.weight"
    state[name] = torch.full_like(state[name], float("inf"))
    torch.save(state, tmp_path / "diverged.pth")
    with pytest.raises(CheckpointError, match=rf"diverged.pth holds NaN or inf values in {name}; the run .* diverged"):
        load_network_weights(net, str(tmp_path / "diverged.pth"))


def test_state_fingerprint_follows_the_values_not_the_module() -> None:
    torch.manual_seed(0)
    a, b = S3Network(load_model_config("s3_tiny")), S3Network(load_model_config("s3_tiny"))
    assert state_fingerprint(a) != state_fingerprint(b)  # other random weights
    b.load_state_dict(a.state_dict())
    assert state_fingerprint(a) == state_fingerprint(b)
    with torch.no_grad():
        next(b.parameters()).view(-1)[0] += 1e-6
    assert state_fingerprint(a) != state_fingerprint(b)


def test_wrong_checkpoint_lists_the_first_offending_names(tmp_path: Path) -> None:
    net = S3Network(load_model_config("s3_tiny"))
    sd = net.state_dict()
    sd.pop("key_proj.key_proj.weight")
    sd["object_transformer.query_init.weight"] = torch.zeros(3, 3)
    sd["extra.thing"] = torch.zeros(1)
    path = tmp_path / "bad.pth"
    torch.save(sd, path)
    with pytest.raises(CheckpointError) as err:
        load_network_weights(net, str(path))
    text = str(err.value)
    assert "missing keys: key_proj.key_proj.weight" in text
    assert "unexpected keys: extra.thing" in text
    assert "object_transformer.query_init.weight (3, 3) vs" in text


def test_reference_rules_leave_our_names_alone(s3_vitb: S3Network) -> None:
    ours = list(s3_vitb.state_dict())
    assert not is_reference_layout(dict.fromkeys(ours, torch.zeros(1)))
    assert reference_to_ours(dict.fromkeys(ours, 0)) == dict.fromkeys(ours, 0)


def test_convert_job_writes_our_layout(tmp_path: Path) -> None:
    from s3.config import compose
    from s3.run.convert import convert_from_config

    checkpoint = synthetic_reference_checkpoint()
    src, out = tmp_path / "official.pth", tmp_path / "ours.pth"
    torch.save(checkpoint, src)
    printed = convert_from_config(compose("convert_checkpoint", [f"src={src}", f"out={out}", "drop_vit=true"]))
    assert "(reference layout)" in printed
    converted = torch.load(out, weights_only=True)
    assert not any(k.startswith("pixel_encoder.vit.") for k in converted)
    expected = {reference_key_to_ours(k): v for k, v in checkpoint.items() if ".vit_module." not in k}
    assert converted.keys() == expected.keys()
    assert all(torch.equal(converted[k], v) for k, v in expected.items())
    assert not is_reference_layout(converted)
