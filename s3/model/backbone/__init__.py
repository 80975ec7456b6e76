"""The frozen ViT backbone and its checkpoint loaders."""

from s3.model.backbone.vit import FrozenViT
from s3.model.backbone.vit_weights import convert_vit_state_dict, load_vit_weights

__all__ = ["FrozenViT", "convert_vit_state_dict", "load_vit_weights"]
