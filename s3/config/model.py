"""Typed schema of the model configuration (the ``model`` Hydra group).

Every paper component and ablation is a field here; the defaults are the reference behaviour
(the authors' released ``adapter_depthanybase`` model). Values are validated when the dataclass is
built, so a bad override fails at start-up with the offending key in the message.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from s3.config.validation import ConfigError, check_choice, check_positive

BACKBONE_WEIGHT_FORMATS = ("depth_anything", "dinov2", "timm", "mae")
ENCODER_TYPES = ("s3", "vitdet_fpn", "resnet50")
QUERY_READS = ("discriminative", "cutie")
DQ_NORM_AXES = ("queries", "channels")


@dataclass
class BackboneConfig:
    """The frozen ViT (ignored by the ``resnet50`` encoder)."""

    name: str = "depth_anything_vitb14"  # label of the preset this came from
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    patch_size: int = 16  # 14x14 checkpoint kernels are resized to 16x16 at load time
    pos_grid: int = 37  # side of the square positional table (37 for 518/14 checkpoints)
    layer_scale: bool = True  # DINOv2 / Depth Anything have LayerScale, MAE does not
    weights: Optional[str] = None  # local checkpoint file; None = random init (tests, or a full S3 checkpoint follows)
    weights_format: str = "depth_anything"  # one of BACKBONE_WEIGHT_FORMATS

    def validate(self, key: str = "model.backbone") -> None:
        check_choice(f"{key}.weights_format", self.weights_format, BACKBONE_WEIGHT_FORMATS)
        for name in ("embed_dim", "depth", "num_heads", "patch_size", "pos_grid"):
            check_positive(f"{key}.{name}", getattr(self, name))
        if self.embed_dim % self.num_heads:
            raise ConfigError(f"{key}.embed_dim={self.embed_dim} is not divisible by {key}.num_heads={self.num_heads}")


@dataclass
class EncoderConfig:
    """The pixel encoder: the S3 spatial-semantic encoder or one of the ablation baselines."""

    type: str = "s3"  # s3 | vitdet_fpn (paper "+ViT" row) | resnet50 (Cutie baseline)
    semantic: bool = True  # s3: CLS + mean-token semantic cross-attention (paper "+Semantic")
    spatial: bool = True  # s3: deformable-attention extractor units (paper "+Spatial")
    prior_width: int = 64  # s3: spatial prior CNN width (64/128/256 at strides 4/8/16)
    num_blocks: int = 4  # s3: spatial-semantic blocks; the ViT depth is split evenly among them
    num_heads: int = 12  # s3: heads of the semantic and deformable attention
    num_points: int = 4  # s3: deformable sampling points per head
    ffn_ratio: float = 0.25  # s3: ConvFFN hidden width / ViT width
    extra_units_last_block: int = 2  # s3: extra extractor units in the last block (reference code)
    add_vit_features: bool = True  # s3: add the ViT group maps to the stride-4/8/16 outputs
    drop_path_rate: float = 0.0  # s3: stochastic depth on the ConvFFN branch (paper 0.15, reference 0.0)
    fpn_dim: int = 256  # vitdet_fpn: channels of every pyramid level
    resnet_weights: Optional[str] = None  # resnet50: torchvision ResNet-50 state dict file

    def validate(self, vit_dim: int, key: str = "model.encoder") -> None:
        check_choice(f"{key}.type", self.type, ENCODER_TYPES)
        if self.type != "s3":
            return
        if not (self.semantic or self.spatial):
            raise ConfigError(
                f"{key}: semantic and spatial are both off; that is no spatial-semantic encoder "
                f"(use {key}.type=vitdet_fpn for the plain-ViT ablation)"
            )
        for name in ("prior_width", "num_blocks", "num_heads", "num_points"):
            check_positive(f"{key}.{name}", getattr(self, name))
        if vit_dim % self.num_heads:
            raise ConfigError(f"{key}.num_heads={self.num_heads} does not divide the ViT width {vit_dim}")
        if not 0.0 <= self.drop_path_rate < 1.0:
            raise ConfigError(f"{key}.drop_path_rate must be in [0, 1), got {self.drop_path_rate}")
        if self.ffn_ratio <= 0 or self.extra_units_last_block < 0:
            raise ConfigError(f"{key}: ffn_ratio must be > 0 and extra_units_last_block >= 0")


@dataclass
class QueryConfig:
    """The object query transformer."""

    read: str = "discriminative"  # discriminative (S3) | cutie (masked cross-attention)
    num_queries: int = 8  # paper Table 2: 8 / 16 / 32; half foreground, half background
    num_blocks: int = 5
    num_heads: int = 8
    ffn_dim: int = 2048
    dq_norm_axis: str = "queries"  # queries (reference code) | channels (paper eq. 5)

    def validate(self, dim: int, key: str = "model.query") -> None:
        check_choice(f"{key}.read", self.read, QUERY_READS)
        check_choice(f"{key}.dq_norm_axis", self.dq_norm_axis, DQ_NORM_AXES)
        for name in ("num_queries", "num_blocks", "num_heads", "ffn_dim"):
            check_positive(f"{key}.{name}", getattr(self, name))
        if self.num_queries % 2:
            raise ConfigError(f"{key}.num_queries={self.num_queries} must be even (half foreground, half background)")
        if dim % self.num_heads:
            raise ConfigError(f"{key}.num_heads={self.num_heads} does not divide model.embed_dim={dim}")


@dataclass
class ModelConfig:
    """The whole S3 network."""

    arch: str = "s3"  # the architecture; every S3 config (s3_vitb, cutie_base, s3_tiny, ...) is "s3"
    name: str = "s3_vitb"
    pixel_dim: int = 256
    key_dim: int = 64
    value_dim: int = 256
    sensory_dim: int = 256
    embed_dim: int = 256
    decoder_dims: list[int] = field(default_factory=lambda: [256, 128, 128])
    pad_multiple: int = 32  # inputs are zero-padded to this multiple (the S3 encoder needs 32)
    mask_encoder_weights: Optional[str] = None  # torchvision ResNet-18 state dict file
    # channels of the mask encoder's stem and layer1 (layer2/layer3: 2x/4x); 64 = ResNet-18 itself (the
    # paper's); tiny models use a narrower trunk (most of their training time is the mask encoder otherwise)
    mask_encoder_width: int = 64
    weights: Optional[str] = None  # a whole S3 checkpoint, our layout or the reference layout
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    query: QueryConfig = field(default_factory=QueryConfig)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        check_choice("model.arch", self.arch, ("s3",))
        for name in ("pixel_dim", "key_dim", "value_dim", "sensory_dim", "embed_dim", "pad_multiple", "mask_encoder_width"):
            check_positive(f"model.{name}", getattr(self, name))
        if self.mask_encoder_weights and self.mask_encoder_width != 64:
            raise ConfigError(
                f"model.mask_encoder_weights: ResNet-18 weights need model.mask_encoder_width=64, "
                f"got {self.mask_encoder_width}"
            )
        if self.value_dim != self.embed_dim:
            raise ConfigError(
                f"model.value_dim={self.value_dim} must equal model.embed_dim={self.embed_dim} "
                "(the fused memory readout is the query transformer's pixel input)"
            )
        if len(self.decoder_dims) != 3 or self.decoder_dims[0] != self.embed_dim:
            raise ConfigError(
                f"model.decoder_dims={list(self.decoder_dims)} must have 3 entries, the first equal to "
                f"model.embed_dim={self.embed_dim}"
            )
        if self.encoder.type == "s3" and self.pad_multiple % 32:
            raise ConfigError(f"model.pad_multiple={self.pad_multiple} must be a multiple of 32 for the s3 encoder")
        self.backbone.validate()
        self.encoder.validate(self.backbone.embed_dim)
        self.query.validate(self.embed_dim)
