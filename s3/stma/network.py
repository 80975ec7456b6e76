"""The STMA network: the per-frame operations that the training clip model and the streaming
processor call.

The network owns no memory state. The caller keeps the spatial memory (the stem tokens X of the
reference frames, and their masks when ``model.reference_mask_embed`` is on) and the temporal
memory (keys, shrinkage, values), and strings these calls together for each frame:

    stem = net.encode_stem(image)                                   # every frame; X goes to the spatial memory
    objects = net.object_tokens(memory_value, object_valid)         # eq. 5 (None with model.stml.objects=false)
    references = net.prepare_references(reference_tokens, reference_masks)
    context = net.prepare_context(references, objects, object_valid)  # test-independent, cacheable
    features = net.associate(stem, context)                         # STML test feature F_t, pix, f8, f4
    key, shrinkage, selection = net.transform_key(features.f16)
    readout, usage = net.read_memory(key, selection, memory_key, memory_shrinkage, memory_value)
    logits, prob = net.segment(features, net.fuse(features.pix_feat, readout), selector)
    value = net.encode_mask(image, features.pix_feat, prob[:, 1:])  # memory frames

The first frame has no references and no objects: ``net.associate(stem)`` is plain self-attention;
its key and the value of its given masks start the temporal memory. With
``model.id_association=per_object`` (Table 1 "W/O Temporal Memory") there is no temporal memory:
``features = net.associate_per_object(stem, reference_tokens, reference_masks)`` runs STML once per
object and ``net.segment_per_object(features, num_objects, selector)`` decodes it.

Images are RGB in [0, 1], already padded to ``model.pad_multiple`` (see ``pad_to_multiple``);
ImageNet normalisation happens inside.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from s3.config.stma import STMAConfig
from s3.model.aggregation import others_mask
from s3.model.decoder import MaskDecoder
from s3.model.group_blocks import GroupFeatureFusionBlock
from s3.model.memory.key_projection import KeyProjection
from s3.model.memory.mask_encoder import MaskEncoder
from s3.model.memory.readout import affinity_from_similarity, anisotropic_l2_similarity, readout_values
from s3.stma.convvit import ConvViT, PlainViT, StemOutput, TransposedConvPyramid
from s3.stma.mask_embed import MaskPatchEmbedding
from s3.stma.object_tokens import ObjectTokenizer
from s3.stma.stml import (
    ReferenceStreams,
    association_mask,
    attend_test_stream,
    encode_reference_streams,
    joint_association,
)

EMPTY_SLOT_LOGIT = -1e4  # the decoder logit of an empty object slot: probability exactly 0
BACKGROUND_EPS = 1e-7  # the background probability stays <= 1 - 1e-7, as soft_aggregate's clamp
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

Backbone = Union[ConvViT, PlainViT]


def build_backbone(cfg: STMAConfig) -> Backbone:
    b = cfg.backbone
    if b.type == "convvit":
        return ConvViT(b.widths, b.depths, b.num_heads, b.mlp_ratio, b.position_scale)
    return PlainViT(b.widths[0], b.depths[0], b.num_heads, b.mlp_ratio, b.position_scale)


@dataclass
class AssociationContext:
    """The references and objects one test frame is associated with.

    ``references`` (B, m, L, C) / ``objects`` (B, N, C) are the STML inputs after the switches
    (None when absent or switched off); ``object_valid`` (B, N) bool. ``streams`` holds the
    precomputed reference and object streams (decomposed attention only; None for ``joint``).
    """

    references: Optional[Tensor]
    objects: Optional[Tensor]
    object_valid: Optional[Tensor]
    streams: Optional[ReferenceStreams]


@dataclass
class FrameFeatures:
    """A test frame after STML."""

    f16: Tensor  # (B, C, h, w): the STML test feature F_t (final LayerNorm applied)
    f8: Tensor  # (B, C8, H/8, W/8): decoder skip
    f4: Tensor  # (B, C4, H/4, W/4): decoder skip
    pix_feat: Tensor  # (B, pixel_dim, h, w) = Conv1x1(F_t)


class STMANetwork(nn.Module):
    """ConvViT-B / ViT-B backbone whose transformer blocks run STML, temporal-memory ID association,
    and a mask decoder without sensory memory."""

    def __init__(self, cfg: STMAConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.pixel_encoder = build_backbone(cfg)
        dim = self.pixel_encoder.embed_dim
        self.pyramid = TransposedConvPyramid(dim) if cfg.backbone.type == "vit" else None
        memory = cfg.id_association == "memory"
        self.object_tokenizer = (
            ObjectTokenizer(cfg.value_dim, dim, cfg.object_embed, cfg.object_slots) if cfg.stml.objects else None
        )
        self.mask_embed = MaskPatchEmbedding(dim) if cfg.reference_mask_embed else None
        self.pix_feat_proj = nn.Conv2d(dim, cfg.pixel_dim, 1)
        self.key_proj = KeyProjection(dim, cfg.pixel_dim, cfg.key_dim) if memory and cfg.key_dim else None
        # No sensory memory in STMA: the encoder gets an empty sensory tensor and never updates it.
        self.mask_encoder = (
            MaskEncoder(cfg.pixel_dim, cfg.value_dim, 0, deep_update=False, width=cfg.mask_encoder_width)
            if memory
            else None
        )
        self.pixel_fuser = (
            GroupFeatureFusionBlock(cfg.pixel_dim, cfg.value_dim, cfg.decoder_dims[0]) if memory else None
        )
        f8_dim, f4_dim = self.pixel_encoder.skip_channels
        self.mask_decoder = MaskDecoder(
            f8_dim, f4_dim, cfg.decoder_dims[0], up_dims=tuple(cfg.decoder_dims), sensory=False
        )
        self.register_buffer("pixel_mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    # ------------------------------------------------------------------ helpers
    def normalize(self, image: Tensor) -> Tensor:
        """image: (B, 3, H, W) RGB in [0, 1] -> ImageNet-normalised (B, 3, H, W)."""
        return (image - self.pixel_mean) / self.pixel_std

    def check_size(self, image: Tensor) -> None:
        m = self.cfg.pad_multiple
        if image.dim() != 4 or image.shape[1] != 3:
            raise ValueError(f"STMANetwork: expected an image batch (B, 3, H, W), got {tuple(image.shape)}")
        if image.shape[-2] % m or image.shape[-1] % m:
            raise ValueError(
                f"STMANetwork: image size {tuple(image.shape[-2:])} is not a multiple of model.pad_multiple={m}; "
                "pad it with s3.model.padding.pad_to_multiple"
            )

    def _require(self, module: Optional[nn.Module], what: str) -> nn.Module:
        if module is None:
            raise RuntimeError(f"STMANetwork: {what} is not part of this configuration ({self.cfg.name})")
        return module

    # ------------------------------------------------------------------ per-frame stem and tokens
    def encode_stem(self, image: Tensor) -> StemOutput:
        """image: (B, 3, H, W) in [0, 1] -> tokens X (B, L, C) with the position table, grid (h, w),
        and for ConvViT the skips f8 (B, C8, H/8, W/8), f4 (B, C4, H/4, W/4)."""
        self.check_size(image)
        return self.pixel_encoder(self.normalize(image))

    def object_tokens(self, memory_value: Tensor, object_valid: Optional[Tensor] = None) -> Optional[Tensor]:
        """memory_value (B, N, CV, M), object_valid (B, N) bool -> object tokens (B, N, C), zero for
        empty slots; None with ``model.stml.objects=false``."""
        if self.object_tokenizer is None:
            return None
        return self.object_tokenizer(memory_value, object_valid)

    def prepare_references(self, reference_tokens: Tensor, reference_masks: Optional[Tensor] = None) -> Tensor:
        """reference_tokens (B, m, L, C) from the spatial memory; reference_masks (B, m, N, H, W) their
        object masks -> (B, m, L, C), with the union of the masks patch-embedded and added when
        ``model.reference_mask_embed`` is on (unchanged otherwise)."""
        if self.mask_embed is None:
            return reference_tokens
        if reference_masks is None:
            raise ValueError("STMANetwork: model.reference_mask_embed=true needs the reference masks")
        foreground = reference_masks.sum(dim=2).clamp(0, 1)  # (B, m, H, W)
        return reference_tokens + self.mask_embed(foreground)

    # ------------------------------------------------------------------ STML
    def prepare_context(
        self,
        reference_tokens: Optional[Tensor] = None,
        objects: Optional[Tensor] = None,
        object_valid: Optional[Tensor] = None,
    ) -> AssociationContext:
        """reference_tokens (B, m, L, C) or None; objects (B, N, C) or None; object_valid (B, N) bool
        (None = all real) -> the context of :meth:`associate`.

        ``model.stml.references=false`` / ``objects=false`` drop the corresponding input. With the
        decomposed attention the reference and object streams run here, once: they never read the
        test frame, so one context serves every test frame with the same references and objects.
        """
        stml = self.cfg.stml
        if not stml.references or (reference_tokens is not None and reference_tokens.shape[1] == 0):
            reference_tokens = None
        if not stml.objects or (objects is not None and objects.shape[1] == 0):
            objects = None
        if objects is None:
            object_valid = None
        elif object_valid is None:
            object_valid = objects.new_ones(objects.shape[:2], dtype=torch.bool)
        streams = None
        if stml.attention == "decomposed":
            streams = encode_reference_streams(
                self.pixel_encoder.blocks,
                reference_tokens,
                objects,
                object_valid,
                test_sees_objects=not stml.references,
            )
        return AssociationContext(reference_tokens, objects, object_valid, streams)

    def associate(self, stem: StemOutput, context: Optional[AssociationContext] = None) -> FrameFeatures:
        """STML on the test frame: stem tokens (B, L, C) + context -> F_t (B, C, h, w), its pixel
        feature (B, pixel_dim, h, w) and the decoder skips f8, f4. No context: plain self-attention."""
        blocks = self.pixel_encoder.blocks
        if context is None or self.cfg.stml.attention == "decomposed":
            test = attend_test_stream(blocks, stem.tokens, None if context is None else context.streams)
        else:
            num_references = 0 if context.references is None else context.references.shape[1]
            allowed = association_mask(
                stem.tokens.shape[0],
                num_references,
                stem.tokens.shape[1],
                context.object_valid,
                test_sees_objects=not self.cfg.stml.references,
                joint=True,
                device=stem.tokens.device,
            )
            _, _, test = joint_association(blocks, context.objects, context.references, stem.tokens, allowed)
        test = self.pixel_encoder.norm(test)
        f16 = test.transpose(1, 2).reshape(test.shape[0], test.shape[2], *stem.grid)
        if self.pyramid is not None:
            f8, f4 = self.pyramid(f16)
        else:
            f8, f4 = stem.f8, stem.f4
        return FrameFeatures(f16=f16, f8=f8, f4=f4, pix_feat=self.pix_feat_proj(f16))

    def associate_per_object(
        self, stem: StemOutput, reference_tokens: Tensor, reference_masks: Tensor
    ) -> FrameFeatures:
        """Table 1 "W/O Temporal Memory" (SimVOS style): one STML pass per object, with that object's
        masks patch-embedded into the references.

        stem tokens (B, L, C); reference_tokens (B, m, L, C); reference_masks (B, m, N, H, W)
        -> features of a batch of B*N frames (index b*N + n), e.g. f16 (B*N, C, h, w).
        """
        mask_embed = self._require(self.mask_embed, "model.reference_mask_embed")
        num_objects = reference_masks.shape[2]
        per_object = reference_tokens.unsqueeze(1) + mask_embed(reference_masks.transpose(1, 2))  # (B, N, m, L, C)
        context = self.prepare_context(per_object.flatten(0, 1))

        def repeat(x: Optional[Tensor]) -> Optional[Tensor]:
            return None if x is None else x.repeat_interleave(num_objects, dim=0)

        stem = StemOutput(tokens=repeat(stem.tokens), grid=stem.grid, f8=repeat(stem.f8), f4=repeat(stem.f4))
        return self.associate(stem, context)

    # ------------------------------------------------------------------ ID association (temporal memory)
    def transform_key(
        self, f16: Tensor, need_shrinkage: bool = True, need_selection: bool = True
    ) -> tuple[Tensor, Optional[Tensor], Optional[Tensor]]:
        """f16: (B, C, h, w) -> key (B, CK, h, w), shrinkage (B, 1, h, w), selection (B, CK, h, w), fp32.
        With ``model.key_dim=null`` the key is F_t itself (CK = C) and there is no shrinkage or selection."""
        if self.key_proj is None:
            self._require(self.mask_encoder, "the temporal memory (model.id_association=memory)")
            return f16.float(), None, None
        return self.key_proj(f16, need_shrinkage, need_selection)

    def read_memory(
        self,
        query_key: Tensor,
        query_selection: Optional[Tensor],
        memory_key: Tensor,
        memory_shrinkage: Optional[Tensor],
        memory_value: Tensor,
        top_k: Optional[int] = None,
    ) -> tuple[Tensor, Optional[Tensor]]:
        """Anisotropic-L2 readout of the temporal memory.

        query_key / query_selection (B, CK, h, w); memory_key (B, CK, M); memory_shrinkage (B, 1, M);
        memory_value (B, N, CV, M) -> readout (B, N, CV, h, w), usage (B, M) (top-k only, else None).
        ``top_k=None`` is the full softmax of training; inference keeps the top 30.
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

    def fuse(self, pix_feat: Tensor, readout: Tensor) -> Tensor:
        """pix_feat (B, pixel_dim, h, w), readout (B, N, CV, h, w) -> decoder input (B, N, D0, h, w)."""
        fuser = self._require(self.pixel_fuser, "the temporal memory (model.id_association=memory)")
        return fuser(pix_feat, readout)

    # ------------------------------------------------------------------ decoding
    def segment(
        self, features: FrameFeatures, decoder_input: Tensor, selector: Optional[Tensor] = None, chunk_size: int = -1
    ) -> tuple[Tensor, Tensor]:
        """decoder_input (B, N, D0, h, w) with skips features.f8 / f4; selector (B, N) 0/1 for real objects
        -> logits (B, N+1, H, W), prob (B, N+1, H, W) (background first, soft aggregation)."""
        _, logits = self.mask_decoder(features.f8, features.f4, decoder_input, None, chunk_size, update_sensory=False)
        return self._aggregate(logits, selector)

    def segment_per_object(
        self, features: FrameFeatures, num_objects: int, selector: Optional[Tensor] = None
    ) -> tuple[Tensor, Tensor]:
        """Features of B*N frames from :meth:`associate_per_object`, each decoded from its own pixel
        feature -> logits (B, N+1, H, W), prob (B, N+1, H, W)."""
        _, logits = self.mask_decoder(
            features.f8, features.f4, features.pix_feat.unsqueeze(1), None, update_sensory=False
        )  # (B*N, 1, H/4, W/4)
        return self._aggregate(logits.view(-1, num_objects, *logits.shape[-2:]), selector)

    @staticmethod
    def _aggregate(logits: Tensor, selector: Optional[Tensor]) -> tuple[Tensor, Tensor]:
        """Per-object stride-4 logits x (B, N, H/4, W/4) -> soft aggregation with background, x4
        bilinear -> logits (B, N+1, H, W) and their softmax; empty slots (selector 0) get probability 0.

        Soft aggregation of p_i = sigmoid(x_i) gives object i the logit logit(p_i) = x_i and the
        background logit(prod_i (1 - p_i)). Both are computed in log space, so a saturated decoder
        keeps its gradient: clamping the probabilities (``s3.model.aggregation.soft_aggregate``, whose
        clamp has zero gradient) lets an STMA training run that saturates early never recover, as it
        has no auxiliary loss to pull it back. Only the background logit is bounded, at logit(1 - 1e-7).
        """
        x = logits.float()
        if selector is not None:
            x = x.masked_fill(selector.view(*selector.shape[:2], 1, 1) <= 0, EMPTY_SLOT_LOGIT)
        log_background = F.logsigmoid(-x).sum(dim=1, keepdim=True).clamp(max=-BACKGROUND_EPS)
        background_logit = log_background - torch.log(-torch.expm1(log_background))
        aggregated = torch.cat([background_logit, x], dim=1)
        aggregated = F.interpolate(aggregated, scale_factor=4, mode="bilinear", align_corners=False)
        return aggregated, torch.softmax(aggregated, dim=1)

    # ------------------------------------------------------------------ memorising
    def encode_mask(self, image: Tensor, pix_feat: Tensor, masks: Tensor, chunk_size: int = -1) -> Tensor:
        """image (B, 3, H, W) in [0, 1]; pix_feat (B, pixel_dim, h, w); masks (B, N, H, W) soft
        probabilities -> memory values (B, N, CV, h, w)."""
        encoder = self._require(self.mask_encoder, "the temporal memory (model.id_association=memory)")
        b, n = masks.shape[:2]
        no_sensory = pix_feat.new_zeros(b, n, 0, *pix_feat.shape[-2:])
        value, _ = encoder(
            self.normalize(image),
            pix_feat,
            no_sensory,
            masks,
            others_mask(masks),
            deep_update=False,
            chunk_size=chunk_size,
        )
        return value
