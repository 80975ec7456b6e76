"""The S3 network and its parts (pure nn.Modules; no data, training or inference loops)."""

from s3.model.build import build_network
from s3.model.network import ImageFeatures, S3Network

__all__ = ["ImageFeatures", "S3Network", "build_network"]
