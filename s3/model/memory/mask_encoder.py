"""Mask encoder: turns an image and per-object masks into mask values (and updates the sensory state)."""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from s3.model.group_blocks import GroupFeatureFusionBlock
from s3.model.memory.sensory import SensoryDeepUpdater

IN_CHANNELS = 5  # RGB, the object's mask, the union of the other objects' masks
RESNET18_WIDTH = 64  # channels of ResNet-18's stem and layer1 (layer2: 2x, layer3: 4x)
TRUNK_MODULES = ("conv1", "bn1", "layer1", "layer2", "layer3")


def _stage(in_channels: int, channels: int, stride: int) -> nn.Sequential:
    """Two ResNet basic blocks (torchvision's), the first with a strided 1x1 projection when needed."""
    from torchvision.models.resnet import BasicBlock  # torchvision is loaded when a mask encoder is built

    downsample = None
    if stride != 1 or in_channels != channels:
        downsample = nn.Sequential(
            nn.Conv2d(in_channels, channels, 1, stride=stride, bias=False), nn.BatchNorm2d(channels)
        )
    return nn.Sequential(BasicBlock(in_channels, channels, stride, downsample), BasicBlock(channels, channels))


def resnet18_stages(width: int) -> tuple[nn.BatchNorm2d, nn.MaxPool2d, nn.Sequential, nn.Sequential, nn.Sequential]:
    """bn1, maxpool and layers 1-3 of a ResNet-18 whose stages have width, 2*width, 4*width channels.

    ``width`` 64 is torchvision's ResNet-18 itself (its modules, names and initialisation); other
    widths build the same structure with torchvision's basic blocks and initialisation.
    """
    if width == RESNET18_WIDTH:
        from torchvision.models import resnet18  # torchvision is loaded when a mask encoder is built

        trunk = resnet18(weights=None)
        return trunk.bn1, trunk.maxpool, trunk.layer1, trunk.layer2, trunk.layer3
    stages = (nn.BatchNorm2d(width), nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
              _stage(width, width, 1), _stage(width, 2 * width, 2), _stage(2 * width, 4 * width, 2))
    for stage in stages:
        for module in stage.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
    return stages


class MaskEncoder(nn.Module):
    """ResNet-18 trunk (layers 1-3) on [RGB, mask, others] per object, fused with the pixel features.

    conv1 (5 -> W, 7x7 s2) -> bn1 -> maxpool -> ReLU -> layer1 -> layer2 -> layer3 gives a stride-16,
    4W-channel map per object (W = ``width``: 64, ResNet-18 itself, gives 256 channels; tiny models
    use a narrower trunk); ``fuser`` (GroupFeatureFusionBlock) mixes in ``pix_feat`` to give the
    mask value; ``sensory_update`` (SensoryDeepUpdater, only with ``deep_update``) refreshes the
    sensory state from it. The BatchNorms always stay in eval mode (frozen statistics); their affine
    parameters and all convs remain trainable.
    """

    def __init__(
        self, pixel_dim: int, value_dim: int, sensory_dim: int, deep_update: bool = True, width: int = RESNET18_WIDTH
    ) -> None:
        super().__init__()
        self.width = width
        bn1, maxpool, layer1, layer2, layer3 = resnet18_stages(width)
        self.conv1 = nn.Conv2d(IN_CHANNELS, width, kernel_size=7, stride=2, padding=3, bias=False)
        nn.init.kaiming_normal_(self.conv1.weight, mode="fan_out", nonlinearity="relu")
        self.bn1, self.maxpool, self.layer1, self.layer2, self.layer3 = bn1, maxpool, layer1, layer2, layer3
        self.fuser = GroupFeatureFusionBlock(pixel_dim, 4 * width, value_dim)
        self.sensory_update = SensoryDeepUpdater(value_dim, sensory_dim) if deep_update else None
        self._freeze_batch_norms()

    def _freeze_batch_norms(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.eval()

    def train(self, mode: bool = True) -> MaskEncoder:
        """Switch the mode as usual, except that the BatchNorms stay in eval mode."""
        super().train(mode)
        self._freeze_batch_norms()
        return self

    def _stem(self, image: Tensor, masks: Tensor, others: Tensor) -> Tensor:
        """``conv1`` of [RGB, mask, others] for every object: image (B, 3, H, W); masks, others
        (B, n, H, W) -> (B*n, C, H/2, W/2). The convolution is linear and bias-free, so its RGB part
        is computed once per frame and shared by the frame's objects (the costliest conv of the
        encoder, 3/5 of it, is no longer repeated per object)."""
        b, n = masks.shape[:2]
        conv, weight = self.conv1, self.conv1.weight
        shared = F.conv2d(image, weight[:, :3], stride=conv.stride, padding=conv.padding)
        own = F.conv2d(
            torch.stack([masks, others], dim=2).flatten(0, 1), weight[:, 3:], stride=conv.stride, padding=conv.padding
        )
        return (own.unflatten(0, (b, n)) + shared.unsqueeze(1)).flatten(0, 1)

    def _encode_objects(self, image: Tensor, pix_feat: Tensor, masks: Tensor, others: Tensor) -> Tensor:
        """image (B, 3, H, W); masks, others (B, n, H, W) -> value (B, n, CV, h, w)."""
        b, n = masks.shape[:2]
        x = F.relu(self.maxpool(self.bn1(self._stem(image, masks, others))))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fuser(pix_feat, x.view(b, n, *x.shape[1:]))

    def forward(
        self,
        image: Tensor,
        pix_feat: Tensor,
        sensory: Tensor,
        masks: Tensor,
        others: Tensor,
        deep_update: bool = True,
        chunk_size: int = -1,
    ) -> tuple[Tensor, Tensor]:
        """image: (B, 3, H, W) normalised; pix_feat: (B, C, h, w); sensory: (B, N, S, h, w);
        masks, others: (B, N, H, W) soft masks -> value (B, N, CV, h, w), sensory (B, N, S, h, w)
        (returned unchanged without ``deep_update``). ``chunk_size`` objects are encoded at a time
        (< 1: all at once); the result does not depend on it.
        """
        if deep_update and self.sensory_update is None:
            raise ValueError("MaskEncoder: deep_update requested but the encoder was built with deep_update=False")
        num_objects = masks.shape[1]
        step = num_objects if chunk_size < 1 else chunk_size
        values, sensories = [], []
        for start in range(0, num_objects, step):
            chunk = slice(start, start + step)
            value = self._encode_objects(image, pix_feat, masks[:, chunk], others[:, chunk])
            values.append(value)
            if deep_update:
                sensories.append(self.sensory_update(value, sensory[:, chunk]))
        new_sensory = torch.cat(sensories, dim=1) if deep_update else sensory
        return torch.cat(values, dim=1), new_sensory

    def load_resnet18_state_dict(self, state_dict: Mapping[str, Tensor]) -> None:
        """Load a torchvision ResNet-18 state dict into the trunk (conv1, bn1, layer1-3).

        Other keys (layer4, fc) are ignored; a missing ``num_batches_tracked`` keeps the current one.
        A conv1 with fewer input channels (3 in torchvision) is widened to 5: its filters are copied
        and the extra input channels are orthogonally initialised. Raises ValueError naming the first missing keys and
        shape mismatches.
        """
        if self.width != RESNET18_WIDTH:
            raise ValueError(
                f"load_resnet18_state_dict: this mask encoder is {self.width} channels wide; "
                f"ResNet-18 weights need width {RESNET18_WIDTH}"
            )
        missing: list[str] = []
        mismatched: list[str] = []
        loaded: dict[str, dict[str, Tensor]] = {}
        for module_name in TRUNK_MODULES:
            module_state = {}
            for key, current in getattr(self, module_name).state_dict().items():
                full_key = f"{module_name}.{key}"
                if full_key not in state_dict:
                    if key.endswith("num_batches_tracked"):
                        module_state[key] = current
                    else:
                        missing.append(full_key)
                    continue
                tensor = state_dict[full_key]
                if full_key == "conv1.weight":
                    tensor = _widen_input_channels(tensor, current.shape[1])
                if tensor.shape != current.shape:
                    mismatched.append(f"{full_key}: {tuple(tensor.shape)} vs expected {tuple(current.shape)}")
                    continue
                module_state[key] = tensor
            loaded[module_name] = module_state
        if missing or mismatched:
            raise ValueError(
                "load_resnet18_state_dict: not a compatible ResNet-18 state dict; "
                f"{len(missing)} missing keys {missing[:5]}, {len(mismatched)} shape mismatches {mismatched[:5]}"
            )
        for module_name, module_state in loaded.items():
            getattr(self, module_name).load_state_dict(module_state)


def _widen_input_channels(weight: Tensor, in_channels: int) -> Tensor:
    """(out, c, kh, kw) with c < in_channels -> (out, in_channels, kh, kw), extra channels orthogonal."""
    if weight.ndim != 4 or weight.shape[1] >= in_channels:
        return weight
    extra = torch.empty(weight.shape[0], in_channels - weight.shape[1], *weight.shape[2:])
    nn.init.orthogonal_(extra)
    return torch.cat([weight, extra.to(weight)], dim=1)
