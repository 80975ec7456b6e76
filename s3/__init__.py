"""s3: S3 (ICLR 2025) semi-supervised video object segmentation — network, data, training,
inference and evaluation. See the README for the commands and the package layout."""

__version__ = "0.1.0"
