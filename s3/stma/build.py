"""Building the STMA network from its config, with every configured weight file loaded."""

from __future__ import annotations

from s3.config.stma import STMAConfig
from s3.stma.network import STMANetwork
from s3.stma.weights import load_backbone_weights, load_mask_encoder_weights, load_stma_checkpoint


def build_stma_network(cfg: STMAConfig) -> STMANetwork:
    """Build :class:`STMANetwork` and load, in order, the backbone initialisation
    (``model.backbone.weights``), the mask encoder's ResNet-18 (``model.mask_encoder_weights``) and a
    whole STMA checkpoint (``model.weights``), each when its key names a file. Nothing is downloaded."""
    network = STMANetwork(cfg)
    if cfg.backbone.weights:
        load_backbone_weights(network.pixel_encoder, cfg.backbone.weights, cfg.backbone.weights_format)
    if cfg.mask_encoder_weights:
        load_mask_encoder_weights(network, cfg.mask_encoder_weights)
    if cfg.weights:
        load_stma_checkpoint(network, cfg.weights)
    return network
