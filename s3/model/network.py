"""The S3 network: the per-frame operations that the trainer and the inference engine call.

The network owns no memory state. A caller (the training clip forward in ``s3.train``, or the
inference engine in ``s3.inference``) keeps the pixel memory (keys, shrinkage, values), the object
memory (summaries), the sensory memory and the last mask, and strings these calls together:

    features = net.encode_image(image)                                    # every frame
    key, shrinkage, selection = net.transform_key(features.f16)
    readout = <the caller's pixel-memory readout>                         # net.read_pixel_memory
    out = net.segment_frame(features, readout, sensory, last_mask, object_memory)
    value, sensory, summaries = net.encode_mask(image, features.pix_feat, out.sensory, masks)  # memory frames

:meth:`S3Network.segment_frame` is the one per-frame step (pixel fusion -> object queries ->
decoder) that training, the inference engine and the model table all call.

Images are RGB in [0, 1], already padded to ``model.pad_multiple`` (see ``pad_to_multiple``);
ImageNet normalisation happens inside.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from s3.config.model import ModelConfig
from s3.model.aggregation import others_mask, soft_aggregate
from s3.model.aux_computer import AuxComputer
from s3.model.decoder import MaskDecoder
from s3.model.memory.key_projection import KeyProjection
from s3.model.memory.mask_encoder import MaskEncoder
from s3.model.memory.pixel_fuser import PixelFuser
from s3.model.memory.readout import affinity_from_similarity, anisotropic_l2_similarity, readout_values
from s3.model.memory.summarizer import ObjectSummarizer
from s3.model.query.transformer import QueryTransformer

if TYPE_CHECKING:
    from s3.model.backbone.vit import FrozenViT

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


# Each pixel encoder's module is imported when it is built: the ViT needs timm, ResNet-50 torchvision.


def build_vit(cfg: ModelConfig) -> FrozenViT:
    from s3.model.backbone.vit import FrozenViT

    b = cfg.backbone
    return FrozenViT(
        embed_dim=b.embed_dim,
        depth=b.depth,
        num_heads=b.num_heads,
        patch_size=b.patch_size,
        pos_grid=b.pos_grid,
        layer_scale=b.layer_scale,
    )


def _build_s3_encoder(cfg: ModelConfig) -> nn.Module:
    from s3.model.encoder.s3_encoder import S3Encoder

    e = cfg.encoder
    return S3Encoder(
        build_vit(cfg),
        prior_width=e.prior_width,
        num_blocks=e.num_blocks,
        deform_heads=e.num_heads,
        deform_points=e.num_points,
        ffn_ratio=e.ffn_ratio,
        extra_units_last_block=e.extra_units_last_block,
        semantic=e.semantic,
        spatial=e.spatial,
        add_vit_features=e.add_vit_features,
        drop_path=e.drop_path_rate,
    )


def _build_vitdet_fpn(cfg: ModelConfig) -> nn.Module:
    from s3.model.encoder.vitdet_fpn import ViTDetFPNEncoder

    return ViTDetFPNEncoder(build_vit(cfg), out_dim=cfg.encoder.fpn_dim)


def _build_resnet50(cfg: ModelConfig) -> nn.Module:
    from s3.model.encoder.resnet50 import ResNet50Encoder

    return ResNet50Encoder()


PIXEL_ENCODERS: dict[str, Callable[[ModelConfig], nn.Module]] = {
    "s3": _build_s3_encoder,
    "vitdet_fpn": _build_vitdet_fpn,
    "resnet50": _build_resnet50,
}


@dataclass
class FrameOutput:
    """What :meth:`S3Network.segment_frame` returns for one batch of frames."""

    sensory: Tensor  # (B, N, S, h, w): the updated sensory memory (the input one without update_sensory)
    logits: Tensor  # (B, N+1, H, W): soft-aggregated class logits, background first
    prob: Tensor  # (B, N+1, H, W): their softmax (fp32)
    aux: Optional[dict[str, Tensor]] = None  # need_aux: sensory_logits (B, N+1, h, w), query_logits (B, N+1, L, h, w)


@dataclass
class ImageFeatures:
    """Multi-scale features of one batch of frames."""

    f16: Tensor  # (B, C16, H/16, W/16)
    f8: Tensor  # (B, C8, H/8, W/8)
    f4: Tensor  # (B, C4, H/4, W/4)
    pix_feat: Tensor  # (B, pixel_dim, H/16, W/16)


class S3Network(nn.Module):
    """Frozen-ViT spatial-semantic encoder + Cutie-style memory core + discriminative queries."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.pixel_encoder = PIXEL_ENCODERS[cfg.encoder.type](cfg)
        c16, c8, c4 = self.pixel_encoder.out_channels
        self.pix_feat_proj = nn.Conv2d(c16, cfg.pixel_dim, 1)
        self.key_proj = KeyProjection(c16, cfg.pixel_dim, cfg.key_dim)
        self.mask_encoder = MaskEncoder(
            cfg.pixel_dim, cfg.value_dim, cfg.sensory_dim, deep_update=True, width=cfg.mask_encoder_width
        )
        self.mask_decoder = MaskDecoder(c8, c4, cfg.embed_dim, cfg.sensory_dim, tuple(cfg.decoder_dims))
        self.pixel_fuser = PixelFuser(cfg.pixel_dim, cfg.value_dim, cfg.sensory_dim)
        q = cfg.query
        self.object_transformer = QueryTransformer(
            dim=cfg.embed_dim,
            value_dim=cfg.value_dim,
            num_queries=q.num_queries,
            num_blocks=q.num_blocks,
            num_heads=q.num_heads,
            ffn_dim=q.ffn_dim,
            read=q.read,
            dq_norm_axis=q.dq_norm_axis,
        )
        self.object_summarizer = ObjectSummarizer(cfg.value_dim, cfg.embed_dim, q.num_queries)
        self.aux_computer = AuxComputer(cfg.pixel_dim, cfg.sensory_dim)
        self.register_buffer("pixel_mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        # Convolution weights are stored channels-last (NHWC), the layout oneDNN and cuDNN run fastest,
        # so every feature map comes out channels-last; names, shapes and values are unchanged.
        self.to(memory_format=torch.channels_last)

    # ------------------------------------------------------------------ image side
    def normalize(self, image: Tensor) -> Tensor:
        """image: (B, 3, H, W) RGB in [0, 1] -> ImageNet-normalised (B, 3, H, W)."""
        return (image - self.pixel_mean) / self.pixel_std

    def check_size(self, image: Tensor) -> None:
        m = self.cfg.pad_multiple
        if image.dim() != 4 or image.shape[1] != 3:
            raise ValueError(f"S3Network: expected an image batch (B, 3, H, W), got {tuple(image.shape)}")
        if image.shape[-2] % m or image.shape[-1] % m:
            raise ValueError(
                f"S3Network: image size {tuple(image.shape[-2:])} is not a multiple of model.pad_multiple={m}; "
                "pad it with s3.model.padding.pad_to_multiple"
            )

    def encode_image(self, image: Tensor) -> ImageFeatures:
        """image: (B, 3, H, W) in [0, 1] -> multi-scale features and the pixel feature (B, C, H/16, W/16)."""
        self.check_size(image)
        f16, f8, f4 = self.pixel_encoder(self.normalize(image))
        return ImageFeatures(f16=f16, f8=f8, f4=f4, pix_feat=self.pix_feat_proj(f16))

    def transform_key(
        self, f16: Tensor, need_shrinkage: bool = True, need_selection: bool = True
    ) -> tuple[Tensor, Optional[Tensor], Optional[Tensor]]:
        """f16: (B, C16, h, w) -> key (B, CK, h, w), shrinkage (B, 1, h, w), selection (B, CK, h, w) (fp32)."""
        return self.key_proj(f16, need_shrinkage, need_selection)

    # ------------------------------------------------------------------ memory writing
    def encode_mask(
        self,
        image: Tensor,
        pix_feat: Tensor,
        sensory: Tensor,
        masks: Tensor,
        deep_update: bool = True,
        chunk_size: int = -1,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Encode object masks into memory values, updated sensory memory and object summaries.

        image (B, 3, H, W) in [0, 1]; pix_feat (B, C, h, w); sensory (B, N, S, h, w); masks (B, N, H, W)
        soft probabilities -> value (B, N, CV, h, w), sensory (B, N, S, h, w), summaries (B, N, Q, CV+1).
        """
        value, sensory = self.mask_encoder(
            self.normalize(image), pix_feat, sensory, masks, others_mask(masks), deep_update, chunk_size
        )
        summaries, _ = self.object_summarizer(masks, value)
        return value, sensory, summaries

    # ------------------------------------------------------------------ memory reading
    def read_pixel_memory(
        self,
        query_key: Tensor,
        query_selection: Optional[Tensor],
        memory_key: Tensor,
        memory_shrinkage: Optional[Tensor],
        memory_value: Tensor,
        top_k: Optional[int] = None,
    ) -> tuple[Tensor, Optional[Tensor]]:
        """Anisotropic-L2 readout of the pixel memory.

        query_key / query_selection (B, CK, h, w); memory_key (B, CK, M); memory_shrinkage (B, 1, M);
        memory_value (B, N, CV, M) -> readout (B, N, CV, h, w), usage (B, M) (top-k only, else None).
        ``top_k=None`` is the full softmax of training; inference uses top-k (30).
        """
        b, _, h, w = query_key.shape
        similarity = anisotropic_l2_similarity(
            memory_key,
            memory_shrinkage,
            query_key.flatten(2),
            None if query_selection is None else query_selection.flatten(2),
        )
        affinity, usage = affinity_from_similarity(similarity, top_k)
        readout = readout_values(affinity, memory_value)
        return readout.view(b, readout.shape[1], readout.shape[2], h, w), usage

    def fuse_pixel_readout(
        self, pix_feat: Tensor, readout: Tensor, sensory: Tensor, last_mask: Tensor, chunk_size: int = -1
    ) -> Tensor:
        """pix_feat (B, C, h, w), readout (B, N, CV, h, w), sensory (B, N, S, h, w), last_mask
        (B, N, H, W) -> fused pixel readout (B, N, CV, h, w)."""
        return self.pixel_fuser(pix_feat, readout, sensory, last_mask, others_mask(last_mask), chunk_size)

    def read_object_queries(
        self,
        pixel_readout: Tensor,
        object_memory: Tensor,
        selector: Optional[Tensor] = None,
        need_aux: bool = False,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Query transformer: pixel_readout (B, N, C, h, w), object_memory (B, N, T, Q, C+1)
        -> refined readout (B, N, C, h, w) and aux outputs (aux logits when ``need_aux``)."""
        return self.object_transformer(pixel_readout, object_memory, selector=selector, need_aux=need_aux)

    def empty_object_memory(self, features: ImageFeatures, num_objects: int) -> Tensor:
        """The object memory of objects never memorised: zeros (B, N, 1, Q, C+1)."""
        b = features.pix_feat.shape[0]
        q = self.cfg.query.num_queries
        return features.pix_feat.new_zeros(b, num_objects, 1, q, self.cfg.value_dim + 1)

    # ------------------------------------------------------------------ the per-frame step
    def segment_frame(
        self,
        features: ImageFeatures,
        readout: Optional[Tensor],
        sensory: Tensor,
        last_mask: Tensor,
        object_memory: Optional[Tensor],
        selector: Optional[Tensor] = None,
        need_aux: bool = False,
        chunk_size: int = -1,
        update_sensory: bool = True,
    ) -> FrameOutput:
        """Segment every object of one frame from what the memories gave.

        features: the frame's :class:`ImageFeatures` (B frames); readout (B, N, CV, h, w) read from
        the pixel memory, or None when no object has pixel memory (zeros are read); sensory
        (B, N, S, h, w); last_mask (B, N, H, W), the previous frame's object probabilities;
        object_memory (B, N, T, Q, CV+1) summaries, or None when none is memorised yet (zeros);
        selector (B, N) 0/1 marking real objects (training), or None (all real).
        Runs pixel fusion -> query transformer -> decoder (-> aux heads with ``need_aux``) and
        returns a :class:`FrameOutput`.
        """
        num_objects = sensory.shape[1]
        if readout is None:
            b, _, h, w = features.pix_feat.shape
            readout = features.pix_feat.new_zeros(b, num_objects, self.cfg.value_dim, h, w)
        if object_memory is None:
            object_memory = self.empty_object_memory(features, num_objects)
        pixel = self.fuse_pixel_readout(features.pix_feat, readout, sensory, last_mask, chunk_size)
        query_selector = None if selector is None else selector.view(*selector.shape, 1, 1)
        # all objects at once: the query transformer's attention masks compare the objects
        pixel, aux = self.read_object_queries(pixel, object_memory, selector=query_selector, need_aux=need_aux)
        aux_out = self.compute_aux(features.pix_feat, sensory, aux, selector) if need_aux else None
        new_sensory, logits, prob = self.decode(
            features, pixel, sensory, selector=selector, chunk_size=chunk_size, update_sensory=update_sensory
        )
        return FrameOutput(sensory=new_sensory, logits=logits, prob=prob, aux=aux_out)

    # ------------------------------------------------------------------ decoding
    def decode(
        self,
        features: ImageFeatures,
        memory_readout: Tensor,
        sensory: Tensor,
        selector: Optional[Tensor] = None,
        chunk_size: int = -1,
        update_sensory: bool = True,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Decode masks for all objects.

        memory_readout (B, N, C, h, w); sensory (B, N, S, h, w); selector (B, N) 0/1 for real objects
        -> sensory (B, N, S, h, w), logits (B, N+1, H, W), prob (B, N+1, H, W) (background first).
        """
        sensory, logits = self.mask_decoder(
            features.f8, features.f4, memory_readout, sensory, chunk_size=chunk_size, update_sensory=update_sensory
        )
        prob = torch.sigmoid(logits.float())
        if selector is not None:
            prob = prob * selector.view(*selector.shape[:2], 1, 1)
        logits = soft_aggregate(prob, dim=1)
        logits = F.interpolate(logits, scale_factor=4, mode="bilinear", align_corners=False)
        return sensory, logits, torch.softmax(logits, dim=1)

    def compute_aux(
        self, pix_feat: Tensor, sensory: Tensor, aux: dict[str, list[Tensor]], selector: Optional[Tensor] = None
    ) -> dict[str, Tensor]:
        """Auxiliary logits for the training losses: sensory (B, N+1, h, w) and query (B, N+1, L, h, w)."""
        return self.aux_computer(pix_feat, sensory, aux["logits"], selector)

    # ------------------------------------------------------------------ bookkeeping
    def zero_sensory(self, features: ImageFeatures, num_objects: int) -> Tensor:
        """A fresh sensory memory for ``num_objects`` objects: (B, N, S, h, w) zeros."""
        b, _, h, w = features.pix_feat.shape
        return features.pix_feat.new_zeros(b, num_objects, self.cfg.sensory_dim, h, w)
