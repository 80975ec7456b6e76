"""Building the network from its config, with every configured weight file loaded."""

from __future__ import annotations

from s3.config.model import ModelConfig
from s3.model.network import S3Network
from s3.model.weights import load_network_weights, read_state_dict


def build_network(cfg: ModelConfig) -> S3Network:
    """Build :class:`S3Network` and load, in order, the ViT, ResNet-18 (mask encoder) and
    ResNet-50 (pixel encoder) initialisations and then a whole S3 checkpoint, each when its config
    key names a file. Nothing is downloaded."""
    network = S3Network(cfg)
    vit = getattr(network.pixel_encoder, "vit", None)
    vit_loaded = False
    if cfg.backbone.weights and vit is not None:
        from s3.model.backbone.vit_weights import load_vit_weights  # with the ViT: timm is loaded only when built

        load_vit_weights(vit, cfg.backbone.weights, cfg.backbone.weights_format)
        vit_loaded = True
    if cfg.mask_encoder_weights:
        resnet18 = read_state_dict(cfg.mask_encoder_weights, "model.mask_encoder_weights")
        network.mask_encoder.load_resnet18_state_dict(resnet18)
    if cfg.encoder.type == "resnet50" and cfg.encoder.resnet_weights:
        network.pixel_encoder.load_torchvision_weights(cfg.encoder.resnet_weights)
    if cfg.weights:
        load_network_weights(network, cfg.weights, vit_already_loaded=vit_loaded)
    return network
