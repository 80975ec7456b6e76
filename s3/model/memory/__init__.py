"""Memory-side modules: key projection, mask encoding, sensory updates, object summaries, pixel readout and fusion."""

from s3.model.memory.key_projection import KeyProjection
from s3.model.memory.mask_encoder import MaskEncoder
from s3.model.memory.pixel_fuser import PixelFuser
from s3.model.memory.readout import affinity_from_similarity, anisotropic_l2_similarity, readout_values
from s3.model.memory.sensory import SensoryDeepUpdater, SensoryUpdater, sensory_gru_gate
from s3.model.memory.summarizer import ObjectSummarizer

__all__ = [
    "KeyProjection",
    "MaskEncoder",
    "ObjectSummarizer",
    "PixelFuser",
    "SensoryDeepUpdater",
    "SensoryUpdater",
    "affinity_from_similarity",
    "anisotropic_l2_similarity",
    "readout_values",
    "sensory_gru_gate",
]
