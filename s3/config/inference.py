"""Typed schema of the streaming inference engine (``s3.inference.VideoProcessor``).

One :class:`InferenceConfig` holds every setting of the engine. Evaluation builds it from the
``inference`` node of ``configs/eval.yaml`` (dataset-independent settings) and the preset's
protocol (the memory schedule and the processing size, ``SCHEDULE_KEYS``); the Python API takes it
directly. ``VideoProcessor.update_config`` changes the settings that may change mid-video.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from s3.config.runtime import check_precision
from s3.config.validation import ConfigError, check_choice, check_positive

OBJECT_GROUPS = ("bucket", "all")  # see InferenceConfig.object_groups
# Settings an evaluation takes from the preset's protocol, never from the ``inference`` node.
SCHEDULE_KEYS = ("mem_every", "max_mem_frames", "use_long_term", "max_internal_size")


@dataclass
class LongTermConfig:
    """XMem-style long-term memory (used when ``use_long_term``)."""

    max_mem_frames: int = 10  # working-memory frames (incl. the permanent one) that trigger a consolidation
    min_mem_frames: int = 5  # working-memory frames (incl. the permanent one) kept after it
    num_prototypes: int = 128  # tokens one consolidation adds to the long-term memory (per bucket)
    max_num_tokens: int = 10000  # long-term tokens per bucket, at most
    buffer_tokens: int = 2000  # pruning frees this many tokens more than needed

    def validate(self, key: str = "inference.long_term") -> None:
        for name in ("max_mem_frames", "min_mem_frames", "num_prototypes", "max_num_tokens"):
            check_positive(f"{key}.{name}", getattr(self, name))
        if not 1 <= self.min_mem_frames < self.max_mem_frames:
            raise ConfigError(
                f"{key}: need 1 <= min_mem_frames < max_mem_frames, got {self.min_mem_frames} and {self.max_mem_frames}"
            )
        if self.buffer_tokens < 0 or self.max_num_tokens - self.num_prototypes - self.buffer_tokens < 0:
            raise ConfigError(
                f"{key}: need max_num_tokens >= num_prototypes + buffer_tokens >= num_prototypes, got "
                f"{self.max_num_tokens}, {self.num_prototypes}, {self.buffer_tokens}"
            )


@dataclass
class InferenceConfig:
    """Everything the streaming engine needs."""

    top_k: int = 30  # memory readout keeps the k most similar tokens per query pixel
    stagger_updates: int = 5  # sensory updates spread over each memory period
    # objects at a time through pixel fusion, mask encoder and decoder (-1: all); the result does not
    # depend on it (the query transformer always sees every object of a group, see object_groups)
    chunk_size: int = -1
    flip_aug: bool = False  # average with the horizontally flipped frame (memory kept for both)
    precision: str = "fp32"  # fp32 | bf16 (CPU and CUDA) | fp16 (CUDA): autocast of the network's steps
    memorise_empty_frames: bool = False  # paper 4.1: frames predicted without any target are not memorised
    # objects that go through pixel fusion and the query transformer together (their "other objects"
    # input and attention masks compare them): "bucket" (the authors' code), the objects first given on
    # the same frame; "all", every tracked object. They differ only once objects join mid-video.
    object_groups: str = "bucket"
    long_term: LongTermConfig = field(default_factory=LongTermConfig)
    # the memory schedule and processing size (evaluation: from the preset's protocol)
    mem_every: int = 5  # a memory frame every ``mem_every`` frames (and whenever a mask is given)
    max_mem_frames: int = 5  # without long-term memory: working-memory frames incl. the permanent one
    use_long_term: bool = False
    max_internal_size: int = -1  # shorter side is downscaled to this inside the processor (-1: never)
    # torch.compile the network's parts (s3.model.compile.compile_network); the first frames of each new
    # shape (object count, memory size) are slow while it compiles; pays off on long videos and GPUs
    compile: bool = False

    def __post_init__(self) -> None:
        self.validate()

    def validate(self, key: str = "inference") -> None:
        check_positive(f"{key}.top_k", self.top_k)
        check_positive(f"{key}.stagger_updates", self.stagger_updates)
        if self.chunk_size == 0 or self.chunk_size < -1:
            raise ConfigError(f"{key}.chunk_size must be -1 (all objects) or >= 1, got {self.chunk_size}")
        check_precision(f"{key}.precision", self.precision)
        check_choice(f"{key}.object_groups", self.object_groups, OBJECT_GROUPS)
        self.long_term.validate(f"{key}.long_term")
        check_positive(f"{key}.mem_every", self.mem_every)
        if self.max_mem_frames < 2:
            raise ConfigError(
                f"{key}.max_mem_frames must be >= 2 (the permanent frame and one more), got {self.max_mem_frames}"
            )
        if self.max_internal_size == 0 or self.max_internal_size < -1:
            raise ConfigError(f"{key}.max_internal_size must be -1 (off) or > 0, got {self.max_internal_size}")
