"""ViT checkpoints in their original layouts (synthetic tensors with the real names and shapes)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from s3.model.backbone.vit import FrozenViT
from s3.model.backbone.vit_weights import load_vit_weights
from s3.model.weights import CheckpointError


def original_vit_state_dict(
    dim: int, depth: int, patch: int, grid: int, layer_scale: bool = True, mask_token: bool = True
) -> dict[str, torch.Tensor]:
    """A DINOv2/timm-style ViT state dict written from the published layout, random values."""
    g = torch.Generator().manual_seed(0)

    def r(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g)

    sd = {
        "cls_token": r(1, 1, dim),
        "pos_embed": r(1, 1 + grid * grid, dim),
        "patch_embed.proj.weight": r(dim, 3, patch, patch),
        "patch_embed.proj.bias": r(dim),
        "norm.weight": r(dim),
        "norm.bias": r(dim),
    }
    if mask_token:
        sd["mask_token"] = r(1, dim)
    for i in range(depth):
        p = f"blocks.{i}."
        sd.update(
            {
                p + "norm1.weight": r(dim),
                p + "norm1.bias": r(dim),
                p + "attn.qkv.weight": r(3 * dim, dim),
                p + "attn.qkv.bias": r(3 * dim),
                p + "attn.proj.weight": r(dim, dim),
                p + "attn.proj.bias": r(dim),
                p + "norm2.weight": r(dim),
                p + "norm2.bias": r(dim),
                p + "mlp.fc1.weight": r(4 * dim, dim),
                p + "mlp.fc1.bias": r(4 * dim),
                p + "mlp.fc2.weight": r(dim, 4 * dim),
                p + "mlp.fc2.bias": r(dim),
            }
        )
        if layer_scale:
            sd[p + "ls1.gamma"] = r(dim)
            sd[p + "ls2.gamma"] = r(dim)
    return sd


def save(obj: object, path: Path) -> str:
    torch.save(obj, path)
    return str(path)


def test_depth_anything_vitb14_checkpoint_loads_with_kernel_resize(tmp_path: Path) -> None:
    encoder = original_vit_state_dict(768, 12, patch=14, grid=37)
    checkpoint = {f"pretrained.{k}": v for k, v in encoder.items()}
    checkpoint["depth_head.projects.0.weight"] = torch.randn(96, 768, 1, 1)  # ignored
    vit = FrozenViT()
    load_vit_weights(vit, save(checkpoint, tmp_path / "depth_anything_vitb14.pth"), "depth_anything")
    expected_kernel = F.interpolate(encoder["patch_embed.proj.weight"], size=(16, 16), mode="bilinear", align_corners=True)
    torch.testing.assert_close(vit.patch_embed.proj.weight, expected_kernel)
    assert torch.equal(vit.pos_embed, encoder["pos_embed"])
    assert torch.equal(vit.mask_token, encoder["mask_token"])
    assert torch.equal(vit.blocks[11].ls2.gamma, encoder["blocks.11.ls2.gamma"])
    assert torch.equal(vit.blocks[3].attn.qkv.weight, encoder["blocks.3.attn.qkv.weight"])
    assert not any(p.requires_grad for p in vit.parameters())


def test_dinov2_checkpoint_with_chunked_blocks_loads(tmp_path: Path) -> None:
    sd = original_vit_state_dict(48, 4, patch=14, grid=4)
    chunked = {(k.replace("blocks.", f"blocks.{int(k.split('.')[1]) // 2}.", 1) if k.startswith("blocks.") else k): v for k, v in sd.items()}
    vit = FrozenViT(embed_dim=48, depth=4, num_heads=4, pos_grid=4)
    load_vit_weights(vit, save(chunked, tmp_path / "dinov2.pth"), "dinov2")
    assert torch.equal(vit.blocks[3].mlp.fc2.weight, sd["blocks.3.mlp.fc2.weight"])


def test_timm_checkpoint_without_mask_token_and_with_head_loads(tmp_path: Path) -> None:
    sd = original_vit_state_dict(48, 4, patch=16, grid=4, mask_token=False)
    sd["head.weight"] = torch.randn(10, 48)
    sd["head.bias"] = torch.randn(10)
    vit = FrozenViT(embed_dim=48, depth=4, num_heads=4, pos_grid=4)
    load_vit_weights(vit, save({"state_dict": sd}, tmp_path / "timm.pth"), "timm")
    assert torch.equal(vit.patch_embed.proj.weight, sd["patch_embed.proj.weight"])


def test_mae_checkpoint_drops_the_decoder_and_resizes_the_position_grid(tmp_path: Path) -> None:
    sd = original_vit_state_dict(48, 4, patch=16, grid=14, layer_scale=False, mask_token=False)
    sd["mask_token"] = torch.randn(1, 1, 32)  # MAE's decoder mask token
    sd["decoder_embed.weight"] = torch.randn(32, 48)
    sd["decoder_pos_embed"] = torch.randn(1, 197, 32)
    vit = FrozenViT(embed_dim=48, depth=4, num_heads=4, pos_grid=4, layer_scale=False)
    load_vit_weights(vit, save({"model": sd}, tmp_path / "mae.pth"), "mae")
    grid = sd["pos_embed"][:, 1:].reshape(1, 14, 14, 48).permute(0, 3, 1, 2)
    expected = F.interpolate(grid, size=(4, 4), mode="bicubic", align_corners=False).flatten(2).transpose(1, 2)
    torch.testing.assert_close(vit.pos_embed[:, 1:], expected)


def test_missing_file_names_the_config_key(tmp_path: Path) -> None:
    vit = FrozenViT(embed_dim=48, depth=4, num_heads=4, pos_grid=4)
    with pytest.raises(CheckpointError, match=r"^model\.backbone\.weights: file not found: .*nope\.pth$"):
        load_vit_weights(vit, str(tmp_path / "nope.pth"), "dinov2")


def test_wrong_keys_and_shapes_are_listed(tmp_path: Path) -> None:
    sd = original_vit_state_dict(48, 4, patch=16, grid=4)
    del sd["blocks.2.attn.proj.weight"]
    sd["blocks.0.mlp.fc1.weight"] = torch.randn(100, 48)
    sd["register_tokens"] = torch.randn(1, 4, 48)
    vit = FrozenViT(embed_dim=48, depth=4, num_heads=4, pos_grid=4)
    with pytest.raises(CheckpointError) as err:
        load_vit_weights(vit, save(sd, tmp_path / "bad.pth"), "dinov2")
    text = str(err.value)
    assert "missing keys: blocks.2.attn.proj.weight" in text
    assert "unexpected keys: register_tokens" in text
    assert "blocks.0.mlp.fc1.weight (100, 48) vs (192, 48)" in text


def test_depth_anything_format_rejects_a_plain_dinov2_file(tmp_path: Path) -> None:
    sd = original_vit_state_dict(48, 4, patch=14, grid=4)
    vit = FrozenViT(embed_dim=48, depth=4, num_heads=4, pos_grid=4)
    with pytest.raises(CheckpointError, match="not a Depth Anything checkpoint"):
        load_vit_weights(vit, save(sd, tmp_path / "x.pth"), "depth_anything")


def test_pickled_objects_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.pth"
    torch.save({"model": {"x": object()}}, path)
    vit = FrozenViT(embed_dim=48, depth=4, num_heads=4, pos_grid=4)
    with pytest.raises(CheckpointError, match="cannot read"):
        load_vit_weights(vit, str(path), "dinov2")
