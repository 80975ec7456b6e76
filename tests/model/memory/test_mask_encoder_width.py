"""The mask encoder's width option: ResNet-18 itself at 64, a narrower trunk for tiny models."""

from __future__ import annotations

import pytest
import torch
from torchvision.models import resnet18

from s3.config import ConfigError, load_model_config
from s3.model.memory.mask_encoder import MaskEncoder


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_default_width_is_resnet18_itself() -> None:
    encoder = MaskEncoder(32, 32, 0, deep_update=False)  # STMA builds it this way
    trunk = resnet18()
    for name in ("bn1", "layer1", "layer2", "layer3"):
        assert _count(getattr(encoder, name)) == _count(getattr(trunk, name))
    assert encoder.conv1.weight.shape == (64, 5, 7, 7)
    names = [name for name, _ in encoder.named_children()]
    assert names[:6] == ["conv1", "bn1", "maxpool", "layer1", "layer2", "layer3"]  # state-dict order kept


def test_narrow_trunk_has_the_same_structure_and_output_layout() -> None:
    torch.manual_seed(0)
    narrow, full = MaskEncoder(16, 32, 8, width=16), MaskEncoder(16, 32, 8)
    narrow_keys = {k for k in narrow.state_dict() if not k.startswith("fuser.")}
    full_keys = {k for k in full.state_dict() if not k.startswith("fuser.")}
    assert narrow_keys == full_keys  # same modules, fewer channels
    assert narrow.layer3[0].conv1.out_channels == 64 and _count(narrow) < _count(full) / 8
    image, pix_feat = torch.randn(1, 3, 64, 64), torch.randn(1, 16, 4, 4)
    masks = torch.rand(1, 2, 64, 64)
    with torch.no_grad():
        value, sensory = narrow(image, pix_feat, torch.zeros(1, 2, 8, 4, 4), masks, 1 - masks)
    assert value.shape == (1, 2, 32, 4, 4) and sensory.shape == (1, 2, 8, 4, 4)
    with pytest.raises(ValueError, match="ResNet-18 weights need width 64"):
        narrow.load_resnet18_state_dict(resnet18().state_dict())


def test_width_is_a_validated_model_key() -> None:
    assert load_model_config("s3_vitb").mask_encoder_width == 64
    assert load_model_config("s3_tiny").mask_encoder_width == 16
    with pytest.raises(ConfigError, match="^model.mask_encoder_width must be"):
        load_model_config("s3_tiny", ["model.mask_encoder_width=0"])
    with pytest.raises(ConfigError, match="^model.mask_encoder_weights: ResNet-18 weights need model.mask_encoder_width=64"):
        load_model_config("s3_tiny", ["model.mask_encoder_weights=x.pth"])


def test_the_stem_shares_the_image_part_of_conv1_between_objects() -> None:
    # conv1 over [RGB, mask, others] per object, written out: the shared-RGB stem must equal it
    torch.manual_seed(1)
    encoder = MaskEncoder(16, 32, 8, width=16)
    image, masks, others = torch.randn(2, 3, 48, 80), torch.rand(2, 3, 48, 80), torch.rand(2, 3, 48, 80)
    per_object_image = image.unsqueeze(1).expand(-1, 3, -1, -1, -1)
    stacked = torch.cat([per_object_image, masks[:, :, None], others[:, :, None]], dim=2)
    with torch.no_grad():
        expected = encoder.conv1(stacked.flatten(0, 1))
        assert torch.allclose(encoder._stem(image, masks, others), expected, atol=1e-5)
