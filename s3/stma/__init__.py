"""STMA (Miao et al., ECCV 2024): spatial-temporal multi-level association for video object segmentation.

The second model of this codebase. Its modules import only ``s3.config``, ``s3.model`` and ``s3.stma``:
``convvit`` (backbones), ``stml`` (the association inside the transformer blocks), ``object_tokens``,
``mask_embed``, ``network`` (:class:`~s3.stma.network.STMANetwork`, stateless per-frame operations),
``weights`` (ConvMAE / MAE / MoCo v3 checkpoints) and ``build`` (config -> network).
"""
