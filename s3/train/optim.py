"""AdamW with the reference parameter groups, and the learning-rate schedule of a stage.

Groups over the trainable parameters only (the frozen ViT is never handed to the optimiser), each
parameter in exactly one group, tested in this order:

- ``backbone``: every trainable ``pixel_encoder.*`` parameter (the whole spatial-semantic adapter:
  prior CNN, blocks, level embedding, norms) at ``lr * backbone_lr_ratio``, with weight decay.
- ``embedding``: the weights of ``nn.Embedding`` tables (the learned query init / query PE) and,
  unless ``decay_summary_to_query``, the two ``summary_to_query_*`` Linear weights (what the
  reference's suffix matching does), at ``lr`` with ``embedding_weight_decay``.
- ``other``: everything else at ``lr`` with weight decay (biases and norms included, as in the
  reference).
"""

from __future__ import annotations

import math

from torch import nn
from torch.optim import AdamW
from torch.optim.lr_scheduler import LambdaLR, LRScheduler, MultiStepLR

from s3.config.train import OptimizerConfig

BACKBONE_PREFIX = "pixel_encoder."
SUMMARY_TO_QUERY_WEIGHTS = (
    "object_transformer.summary_to_query_init.weight",
    "object_transformer.summary_to_query_emb.weight",
)
AMP_ADAM_EPS = 1e-6
FP32_ADAM_EPS = 1e-8


def embedding_parameter_names(network: nn.Module, decay_summary_to_query: bool) -> set[str]:
    """Names of the parameters that belong to the no-decay ``embedding`` group (if trainable)."""
    names = {f"{module_name}.weight" for module_name, m in network.named_modules() if isinstance(m, nn.Embedding)}
    if not decay_summary_to_query:
        names.update(SUMMARY_TO_QUERY_WEIGHTS)
    return names


def parameter_groups(network: nn.Module, cfg: OptimizerConfig) -> list[dict]:
    """AdamW parameter groups of ``network`` (an S3Network, unwrapped), empty groups left out.

    Each group dict carries ``name``, ``params``, ``param_names`` (for logging and tests), ``lr``
    and ``weight_decay``.
    """
    embedding_names = embedding_parameter_names(network, cfg.decay_summary_to_query)
    groups = {
        "backbone": (cfg.lr * cfg.backbone_lr_ratio, cfg.weight_decay),
        "embedding": (cfg.lr, cfg.embedding_weight_decay),
        "other": (cfg.lr, cfg.weight_decay),
    }
    members: dict[str, list[tuple[str, nn.Parameter]]] = {name: [] for name in groups}
    for name, param in network.named_parameters():
        if not param.requires_grad:
            continue
        if name.startswith(BACKBONE_PREFIX):
            members["backbone"].append((name, param))
        elif name in embedding_names:
            members["embedding"].append((name, param))
        else:
            members["other"].append((name, param))
    return [
        {
            "name": group,
            "params": [p for _, p in members[group]],
            "param_names": [n for n, _ in members[group]],
            "lr": lr,
            "weight_decay": weight_decay,
        }
        for group, (lr, weight_decay) in groups.items()
        if members[group]
    ]


def build_optimizer(network: nn.Module, cfg: OptimizerConfig, amp: bool) -> AdamW:
    """AdamW over :func:`parameter_groups`; eps = ``cfg.adam_eps`` or 1e-6 with AMP, 1e-8 without."""
    eps = cfg.adam_eps if cfg.adam_eps is not None else (AMP_ADAM_EPS if amp else FP32_ADAM_EPS)
    return AdamW(parameter_groups(network, cfg), lr=cfg.lr, weight_decay=cfg.weight_decay, eps=eps)


def build_scheduler(optimizer: AdamW, cfg: OptimizerConfig, num_iterations: int) -> LRScheduler:
    """Per-iteration schedule of a stage of ``num_iterations``: ``step`` multiplies every group's lr
    by ``lr_gamma`` after ``round(num_iterations * f)`` iterations for each f of
    ``lr_step_fractions``; ``constant`` keeps it (a step schedule without steps); ``cosine`` runs
    iteration i at ``(1 + cos(pi i / num_iterations)) / 2`` of it. With ``warmup_iterations`` W > 0,
    iteration i also runs at ``min(1, (i + 1) / W)`` of that lr."""
    milestones = cfg.milestones(num_iterations)
    if cfg.lr_schedule != "cosine" and cfg.warmup_iterations == 0:
        return MultiStepLR(optimizer, milestones=milestones, gamma=cfg.lr_gamma)
    warmup, gamma, cosine = max(1, cfg.warmup_iterations), cfg.lr_gamma, cfg.lr_schedule == "cosine"

    def factor(iteration: int) -> float:
        if cosine:
            decay = 0.5 * (1.0 + math.cos(math.pi * min(iteration, num_iterations) / num_iterations))
        else:
            decay = gamma ** sum(iteration >= m for m in milestones)
        return min(1.0, (iteration + 1) / warmup) * decay

    return LambdaLR(optimizer, factor)
