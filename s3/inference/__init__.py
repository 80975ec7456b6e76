"""Inference engine: memory stores, the streaming per-video processor and video-level helpers."""

from s3.inference.memory_store import PixelMemory
from s3.inference.object_manager import ObjectManager
from s3.inference.object_memory import ObjectSummaryStore, SensoryStore
from s3.inference.processor import VideoProcessor
from s3.inference.streaming import FramePrediction, StreamingEngine
from s3.inference.video import ImageFolder, VideoFile, open_frames, propagate

__all__ = [
    "FramePrediction",
    "ImageFolder",
    "ObjectManager",
    "ObjectSummaryStore",
    "PixelMemory",
    "SensoryStore",
    "StreamingEngine",
    "VideoFile",
    "VideoProcessor",
    "open_frames",
    "propagate",
]
