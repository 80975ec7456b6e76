"""Pixel encoders: the spatial-semantic S3 encoder, its building blocks and the ViTDet-FPN baseline."""

from s3.model.encoder.conv_ffn import ConvFFN
from s3.model.encoder.deformable_attention import (
    MultiScaleDeformableAttention,
    grid_reference_points,
    sampling_locations,
)
from s3.model.encoder.s3_encoder import S3Encoder
from s3.model.encoder.semantic_attention import SemanticCrossAttention
from s3.model.encoder.spatial_prior import SpatialPriorModule
from s3.model.encoder.spatial_semantic_block import ExtractorUnit, SpatialSemanticBlock
from s3.model.encoder.vitdet_fpn import ViTDetFPNEncoder

__all__ = [
    "ConvFFN",
    "ExtractorUnit",
    "MultiScaleDeformableAttention",
    "S3Encoder",
    "SemanticCrossAttention",
    "SpatialPriorModule",
    "SpatialSemanticBlock",
    "ViTDetFPNEncoder",
    "grid_reference_points",
    "sampling_locations",
]
