"""``torch.compile`` of a network for the engine and the trainer (``inference.compile``, ``train.compile``)."""

from __future__ import annotations

from torch import nn


def compile_network(network: nn.Module, backend: str = "inductor", mode: str | None = None) -> nn.Module:
    """Compile every direct child of ``network`` in place (``nn.Module.compile``) and return it.

    The per-frame operations of a network (``encode_image``, ``segment_frame``, ...) are plain Python
    strung from its children, so compiling the children compiles all the work while the parameters,
    their names and the state dict stay as they are (checkpoints load and save unchanged). Shapes that
    change between calls (object count, memory size) recompile once and are then marked dynamic.
    ``backend="eager"`` runs the capture without code generation (tests).
    """
    for child in network.children():
        child.compile(backend=backend, mode=mode)
    return network
