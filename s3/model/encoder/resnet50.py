"""The ResNet-50 pixel encoder of the Cutie baseline (paper Table 2, "ResNet (Baseline)")."""

from __future__ import annotations

from torch import Tensor, nn

from s3.model.weights import load_strict, read_state_dict


class ResNet50Encoder(nn.Module):
    """torchvision ResNet-50 trunk up to layer3: strides 16 / 8 / 4 = layer3 / layer2 / layer1.

    Parameter names are torchvision's (``conv1``, ``bn1``, ``layer1``..``layer3``) so ImageNet
    state dicts load directly. BatchNorm running statistics stay frozen (eval mode; the affine
    parameters train), as in the mask encoder: VOS batches are a few clips per GPU, too few for
    stable batch statistics.
    """

    out_channels = (1024, 512, 256)

    def __init__(self) -> None:
        super().__init__()
        from torchvision.models import resnet50  # torchvision is loaded when this encoder is built

        trunk = resnet50(weights=None)
        self.conv1, self.bn1, self.relu, self.maxpool = trunk.conv1, trunk.bn1, trunk.relu, trunk.maxpool
        self.layer1, self.layer2, self.layer3 = trunk.layer1, trunk.layer2, trunk.layer3

    def train(self, mode: bool = True) -> "ResNet50Encoder":
        super().train(mode)
        for m in self.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.eval()
        return self

    def forward(self, image: Tensor) -> list[Tensor]:
        """image: (B, 3, H, W) normalised -> [f16 (B,1024,H/16,W/16), f8 (B,512,H/8,W/8), f4 (B,256,H/4,W/4)]."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(image))))
        f4 = self.layer1(x)
        f8 = self.layer2(f4)
        f16 = self.layer3(f8)
        return [f16, f8, f4]

    def load_torchvision_weights(self, path: str, key: str = "model.encoder.resnet_weights") -> None:
        """Load an ImageNet ResNet-50 state dict file (layer4 and fc are ignored)."""
        sd = read_state_dict(path, key)
        sd = {k: v for k, v in sd.items() if not k.startswith(("layer4.", "fc."))}
        load_strict(self, sd, f"{key} ({path})")
