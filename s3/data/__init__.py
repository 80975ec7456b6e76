"""Video data: mask files and the synthetic VOS video generator."""

from s3.data.palette import davis_palette, read_mask, write_mask
from s3.data.synthetic import (
    ObjectPlan,
    SyntheticVideo,
    VideoPlan,
    generate_dataset,
    plan_video,
    prepare_root,
    render_plan,
    render_video,
)

__all__ = [
    "ObjectPlan",
    "SyntheticVideo",
    "VideoPlan",
    "davis_palette",
    "generate_dataset",
    "plan_video",
    "prepare_root",
    "read_mask",
    "render_plan",
    "render_video",
    "write_mask",
]
