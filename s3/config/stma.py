"""Typed schema of the STMA model configuration (the ``model`` Hydra group, ``arch: stma``).

STMA (Miao et al., ECCV 2024) associates object tokens, reference frames and the test frame inside
the transformer blocks of a ConvViT-B (STML), then assigns object identities by reading a temporal
memory. Every paper ablation (Tables 1-2) and every assumption the paper leaves open is a field
here; values are validated when the dataclass is built, so a bad override fails at start-up with a
one-line message naming the key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from s3.config.validation import ConfigError, check_choice, check_positive

STMA_BACKBONE_TYPES = ("convvit", "vit")
STMA_WEIGHT_FORMATS = ("convmae", "mae", "mocov3")
STMA_FORMATS_BY_TYPE = {"convvit": ("convmae",), "vit": ("mae", "mocov3")}
STML_ATTENTIONS = ("decomposed", "joint")
OBJECT_EMBEDS = ("shared", "slot")
ID_ASSOCIATIONS = ("memory", "per_object")
NETWORK_STRIDE = 16  # ConvViT: patch 4 x 2 x 2; ViT: patch 16


@dataclass
class STMABackboneConfig:
    """The trainable backbone whose transformer blocks are the STML blocks.

    ``convvit`` (ConvViT-B, the paper's model): ``widths``/``depths`` are the three stages (two
    convolutional stages at strides 4 and 8, then the transformer at stride 16). ``vit`` (plain
    ViT-B/16, Table 2): one width and one depth.
    """

    name: str = "convmae_convvitb"  # label of the preset this came from
    type: str = "convvit"  # convvit | vit
    widths: list[int] = field(default_factory=lambda: [256, 384, 768])
    depths: list[int] = field(default_factory=lambda: [2, 2, 11])
    num_heads: int = 12
    mlp_ratio: float = 4.0
    # multiplies the fixed sin-cos position table added to the stride-16 tokens (ConvMAE, MAE: 1). A
    # narrow model trained from scratch keeps its keys mostly position with 1 (stma_tiny: 0.1)
    position_scale: float = 1.0
    weights: Optional[str] = None  # local checkpoint file; None = train from scratch (Table 2 "Scratch")
    weights_format: str = "convmae"  # convmae (convvit) | mae | mocov3 (vit)

    @property
    def embed_dim(self) -> int:
        """Width of the transformer (stride-16) stage."""
        return self.widths[-1]

    def validate(self, key: str = "model.backbone") -> None:
        check_choice(f"{key}.type", self.type, STMA_BACKBONE_TYPES)
        check_choice(f"{key}.weights_format", self.weights_format, STMA_WEIGHT_FORMATS)
        if self.weights_format not in STMA_FORMATS_BY_TYPE[self.type]:
            raise ConfigError(
                f"{key}.weights_format={self.weights_format!r} does not fit {key}.type={self.type!r} "
                f"(choose from {list(STMA_FORMATS_BY_TYPE[self.type])})"
            )
        stages = 3 if self.type == "convvit" else 1
        for name in ("widths", "depths"):
            values = list(getattr(self, name))
            if len(values) != stages or any(v < 1 for v in values):
                raise ConfigError(
                    f"{key}.{name}={values} must hold {stages} positive value(s) for {key}.type={self.type!r}"
                )
        check_positive(f"{key}.num_heads", self.num_heads)
        check_positive(f"{key}.mlp_ratio", self.mlp_ratio)
        if self.position_scale < 0:
            raise ConfigError(f"{key}.position_scale must be >= 0, got {self.position_scale}")
        if self.embed_dim % self.num_heads:
            raise ConfigError(f"{key}.widths[-1]={self.embed_dim} is not divisible by {key}.num_heads={self.num_heads}")
        if self.embed_dim % 4:
            raise ConfigError(
                f"{key}.widths[-1]={self.embed_dim} must be a multiple of 4 (2-D sin-cos position table, ViT pyramid)"
            )


@dataclass
class STMLConfig:
    """The spatial-temporal multi-level association inside the transformer blocks (paper eqs. 2-4)."""

    objects: bool = True  # object tokens take part (false: Table 1 "W/O Obj", refs self-attend only)
    references: bool = True  # spatial-memory frames take part (false: Table 1 "W/O Spatial Memory")
    attention: str = "decomposed"  # decomposed (eqs. 2-4) | joint (Table 1 "Joint Self-Attn")

    def validate(self, key: str = "model.stml") -> None:
        check_choice(f"{key}.attention", self.attention, STML_ATTENTIONS)


@dataclass
class STMAConfig:
    """The whole STMA network."""

    arch: str = "stma"
    name: str = "stma_convvitb"
    backbone: STMABackboneConfig = field(default_factory=STMABackboneConfig)
    stml: STMLConfig = field(default_factory=STMLConfig)
    object_embed: str = "shared"  # shared (one learned embedding for every object) | slot (one per slot)
    object_slots: int = 16  # object_embed=slot: size of the per-slot embedding table
    id_association: str = "memory"  # memory (temporal-memory readout) | per_object (Table 1 "W/O Temporal Memory")
    reference_mask_embed: bool = False  # add a patch embedding of each reference's mask to its tokens
    key_dim: Optional[int] = 64  # memory key width; None = the raw C-dim STML feature, no shrinkage/selection
    pixel_dim: int = 256  # Conv1x1(C -> pixel_dim) of the STML test feature, fused with the readout
    value_dim: int = 256  # memory values (mask encoder output)
    decoder_dims: list[int] = field(default_factory=lambda: [256, 128, 128])  # strides 16, 8, 4
    spatial_memory_size: int = 3  # reference frames kept for STML at inference (first frame + latest)
    pad_multiple: int = 16  # inputs are zero-padded to this multiple (the network stride is 16)
    mask_encoder_weights: Optional[str] = None  # torchvision ResNet-18 state dict file
    mask_encoder_width: int = 64  # channels of the ResNet-18 trunk's first stage (64: ResNet-18; tiny configs narrower)
    weights: Optional[str] = None  # a whole STMA checkpoint (our layout), loaded after the parts above

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        if self.arch != "stma":
            raise ConfigError(f"model.arch={self.arch!r}: the STMA schema needs 'stma'")
        self.backbone.validate()
        self.stml.validate()
        check_choice("model.object_embed", self.object_embed, OBJECT_EMBEDS)
        check_choice("model.id_association", self.id_association, ID_ASSOCIATIONS)
        for name in ("object_slots", "pixel_dim", "value_dim", "spatial_memory_size", "pad_multiple", "mask_encoder_width"):
            check_positive(f"model.{name}", getattr(self, name))
        if self.mask_encoder_weights and self.mask_encoder_width != 64:
            raise ConfigError(
                f"model.mask_encoder_weights: ResNet-18 weights need model.mask_encoder_width=64, "
                f"got {self.mask_encoder_width}"
            )
        if self.key_dim is not None:
            check_positive("model.key_dim", self.key_dim)
        if len(self.decoder_dims) != 3 or any(d < 1 for d in self.decoder_dims):
            raise ConfigError(
                f"model.decoder_dims={list(self.decoder_dims)} must hold 3 positive widths (strides 16, 8, 4)"
            )
        if self.pad_multiple % NETWORK_STRIDE:
            raise ConfigError(
                f"model.pad_multiple={self.pad_multiple} must be a multiple of the network stride {NETWORK_STRIDE}"
            )
        if self.id_association == "per_object":
            self._validate_per_object()

    def _validate_per_object(self) -> None:
        if self.stml.objects:
            raise ConfigError(
                "model.stml.objects=true needs model.id_association=memory (object tokens pool the temporal "
                "memory); per_object has none: set model.stml.objects=false"
            )
        if not self.stml.references:
            raise ConfigError(
                "model.stml.references=false leaves model.id_association=per_object no target to follow "
                "(the masks enter through the references)"
            )
        if not self.reference_mask_embed:
            raise ConfigError(
                "model.reference_mask_embed=false: model.id_association=per_object marks each object by "
                "embedding its mask into the references; set it to true"
            )
        if self.mask_encoder_weights:
            raise ConfigError(
                "model.mask_encoder_weights is set, but model.id_association=per_object has no mask encoder"
            )
        if self.pixel_dim != self.decoder_dims[0]:
            raise ConfigError(
                f"model.pixel_dim={self.pixel_dim} must equal model.decoder_dims[0]={self.decoder_dims[0]} "
                "with model.id_association=per_object (the decoder reads the STML feature directly)"
            )
