"""Spatial-temporal multi-level association (STML, paper sec. 3.2, eqs. 2-4).

Three token streams share the weights (qkv, proj, MLP) of every transformer block:

- objects ``(B, N, C)`` attend to the objects (eq. 2, object self-attention);
- reference ``i`` ``(B, m, L, C)`` attends to ``[reference i, objects]`` (eq. 3, reference object
  enhancement; references never see each other nor the test frame);
- the test frame ``(B, L, C)`` attends to ``[test, all references]`` (eq. 4, test reference
  correlation; it never sees the objects directly), or to ``[test, objects]`` when the references
  are switched off (Table 1 "W/O Spatial Memory").

Empty object slots are masked out as keys (each still attends to itself, so no row is empty).
Since the reference and object streams never read the test stream, they are computed once per set
of references and objects (:func:`encode_reference_streams`) and only their per-block keys and values
are kept for the test stream (:func:`attend_test_stream`). The same computation is one joint
attention over ``[objects, references, test]`` under the block mask of :func:`association_mask`;
:func:`joint_association` runs that joint form (the Table 1 "Joint Self-Attn" switch uses it with
every token visible to every other).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

TRANSFORMER_LN_EPS = 1e-6


class AttentionProjections(nn.Module):
    """The multi-head attention weights of one block: ``qkv`` (C -> 3C, with bias) and ``proj`` (C -> C)."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def split(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """x: (..., T, C) normalised tokens -> q, k, v, each (..., heads, T, C / heads)."""
        *lead, tokens, dim = x.shape
        qkv = self.qkv(x).view(*lead, tokens, 3, self.num_heads, dim // self.num_heads)
        qkv = qkv.movedim(-3, 0).transpose(-2, -3)  # (3, ..., heads, T, d)
        return qkv[0], qkv[1], qkv[2]

    def merge(self, attended: Tensor) -> Tensor:
        """attended: (..., heads, T, d) -> projected (..., T, heads * d)."""
        return self.proj(attended.transpose(-2, -3).flatten(-2))


class TokenMLP(nn.Module):
    """fc1 (C -> hidden) -> GELU -> fc2 (hidden -> C)."""

    def __init__(self, dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        """x: (..., C) -> (..., C)."""
        return self.fc2(self.act(self.fc1(x)))


class AssociationBlock(nn.Module):
    """A pre-LN ViT block whose attention step is split in two, so that every stream can bring its
    own keys: ``project`` gives a stream's q, k, v; ``update`` adds the attended values (through
    ``attn.proj``) and then the MLP, both as residuals."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=TRANSFORMER_LN_EPS)
        self.attn = AttentionProjections(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=TRANSFORMER_LN_EPS)
        self.mlp = TokenMLP(dim, int(dim * mlp_ratio))

    def project(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """x: (..., T, C) -> q, k, v of its normalised tokens, each (..., heads, T, d)."""
        return self.attn.split(self.norm1(x))

    def update(self, x: Tensor, attended: Tensor) -> Tensor:
        """x: (..., T, C); attended: (..., heads, T, d) -> the block output (..., T, C)."""
        x = x + self.attn.merge(attended)
        return x + self.mlp(self.norm2(x))


def _attend(query: Tensor, key: Tensor, value: Tensor, allowed: Optional[Tensor] = None) -> Tensor:
    """Softmax attention (scale 1/sqrt(d)): (..., heads, Tq, d) x (..., heads, Tk, d) -> (..., heads, Tq, d).

    ``allowed`` (bool, broadcastable to (..., heads, Tq, Tk)) keeps the True pairs only.
    """
    return F.scaled_dot_product_attention(query, key, value, attn_mask=allowed)


@dataclass
class BlockKeysValues:
    """What the test stream reads from the reference and object streams at one block.

    references: (B, heads, m*L, d) each, or None; objects: (B, heads, N, d) each, or None.
    """

    reference_keys: Optional[Tensor]
    reference_values: Optional[Tensor]
    object_keys: Optional[Tensor]
    object_values: Optional[Tensor]


@dataclass
class ReferenceStreams:
    """The test-independent part of STML: per-block keys/values and the final stream tokens."""

    layers: list[BlockKeysValues]
    references: Optional[Tensor]  # (B, m, L, C) after the last block, or None
    objects: Optional[Tensor]  # (B, N, C) after the last block, or None
    object_valid: Optional[Tensor]  # (B, N) bool: slot holds a real object


def _object_self_mask(object_valid: Tensor) -> Tensor:
    """(B, N) bool -> (B, 1, N, N): key j is visible to query i if slot j is real, or j == i."""
    eye = torch.eye(object_valid.shape[1], dtype=torch.bool, device=object_valid.device)
    return (object_valid[:, None, :] | eye).unsqueeze(1)


def _with_object_keys(frame_tokens: int, object_valid: Tensor) -> Tensor:
    """(B, N) bool -> (B, frame_tokens + N): all frame keys visible, object keys only for real slots."""
    frame = object_valid.new_ones(object_valid.shape[0], frame_tokens)
    return torch.cat([frame, object_valid], dim=1)


def _frames_to_sequence(x: Tensor, batch: int) -> Tensor:
    """(B*m, heads, L, d) per-reference keys or values -> (B, heads, m*L, d), reference-major."""
    x = x.view(batch, -1, *x.shape[1:])  # (B, m, heads, L, d)
    return x.transpose(1, 2).flatten(2, 3)


def encode_reference_streams(
    blocks: Sequence[AssociationBlock],
    references: Optional[Tensor],
    objects: Optional[Tensor],
    object_valid: Optional[Tensor],
    test_sees_objects: bool,
) -> ReferenceStreams:
    """Run the object (eq. 2) and reference (eq. 3) streams through every block.

    references (B, m, L, C) or None; objects (B, N, C) or None; object_valid (B, N) bool or None
    (all real). ``test_sees_objects`` keeps the object keys for the test stream (used when there
    are no references). Returns the per-block keys/values the test stream needs and the final tokens.
    """
    if objects is not None and object_valid is None:
        object_valid = objects.new_ones(objects.shape[:2], dtype=torch.bool)
    layers: list[BlockKeysValues] = []
    for block in blocks:
        object_kv: tuple[Optional[Tensor], Optional[Tensor]] = (None, None)
        reference_kv: tuple[Optional[Tensor], Optional[Tensor]] = (None, None)
        new_objects = None
        if objects is not None:
            q_o, k_o, v_o = block.project(objects)  # (B, heads, N, d)
            new_objects = block.update(objects, _attend(q_o, k_o, v_o, _object_self_mask(object_valid)))
            if test_sees_objects:
                object_kv = (k_o, v_o)
        if references is not None:
            batch, num_references, frame_tokens, dim = references.shape
            flat = references.flatten(0, 1)  # (B*m, L, C): each reference is its own attention batch
            q_r, k_r, v_r = block.project(flat)  # (B*m, heads, L, d)
            keys, values, allowed = k_r, v_r, None
            if objects is not None:
                keys = torch.cat([k_r, k_o.repeat_interleave(num_references, dim=0)], dim=-2)
                values = torch.cat([v_r, v_o.repeat_interleave(num_references, dim=0)], dim=-2)
                allowed = _with_object_keys(frame_tokens, object_valid).repeat_interleave(num_references, dim=0)
                allowed = allowed[:, None, None, :]
            reference_kv = (_frames_to_sequence(k_r, batch), _frames_to_sequence(v_r, batch))
            flat = block.update(flat, _attend(q_r, keys, values, allowed))
            references = flat.view(batch, num_references, frame_tokens, dim)
        objects = new_objects
        layers.append(BlockKeysValues(*reference_kv, *object_kv))
    return ReferenceStreams(layers=layers, references=references, objects=objects, object_valid=object_valid)


def attend_test_stream(
    blocks: Sequence[AssociationBlock], test: Tensor, streams: Optional[ReferenceStreams] = None
) -> Tensor:
    """The test stream (eq. 4): test (B, L, C) -> (B, L, C) after every block.

    At each block the test tokens attend to themselves and to the keys/values that ``streams``
    kept (all references, or the real objects); with no streams this is plain self-attention.
    """
    for index, block in enumerate(blocks):
        q, k, v = block.project(test)  # (B, heads, L, d)
        keys, values, allowed = [k], [v], None
        if streams is not None:
            layer = streams.layers[index]
            if layer.reference_keys is not None:
                keys.append(layer.reference_keys)
                values.append(layer.reference_values)
            if layer.object_keys is not None:
                keys.append(layer.object_keys)
                values.append(layer.object_values)
                frame_keys = sum(part.shape[-2] for part in keys[:-1])
                allowed = _with_object_keys(frame_keys, streams.object_valid)[:, None, None, :]
        test = block.update(test, _attend(q, torch.cat(keys, dim=-2), torch.cat(values, dim=-2), allowed))
    return test


def association_mask(
    batch: int,
    num_references: int,
    frame_tokens: int,
    object_valid: Optional[Tensor],
    test_sees_objects: bool,
    joint: bool = False,
    device: Optional[torch.device] = None,
) -> Tensor:
    """The block mask of STML over the token order ``[objects (N), reference 0 .. m-1 (L each), test (L)]``.

    object_valid (B, N) bool, or None for no object stream. Returns (B, S, S) bool, S = N + m*L + L,
    True where query (row) may attend to key (column). ``joint`` makes every pair visible (Table 1
    "Joint Self-Attn"); in both forms empty object slots are hidden as keys but see themselves.
    """
    if object_valid is not None:
        device = object_valid.device
    num_objects = 0 if object_valid is None else object_valid.shape[1]
    refs_end = num_objects + num_references * frame_tokens
    size = refs_end + frame_tokens
    if joint:
        allowed = torch.ones(size, size, dtype=torch.bool, device=device)
    else:
        allowed = torch.zeros(size, size, dtype=torch.bool, device=device)
        objects = slice(0, num_objects)
        test = slice(refs_end, size)
        allowed[objects, objects] = True
        for index in range(num_references):
            start = num_objects + index * frame_tokens
            reference = slice(start, start + frame_tokens)
            allowed[reference, reference] = True
            allowed[reference, objects] = True
        allowed[test, num_objects:size] = True
        if test_sees_objects:
            allowed[test, objects] = True
    allowed = allowed.unsqueeze(0).repeat(batch, 1, 1)
    if object_valid is not None:
        key_visible = torch.ones(batch, size, dtype=torch.bool, device=device)
        key_visible[:, :num_objects] = object_valid
        allowed &= key_visible[:, None, :]
        allowed[:, :num_objects, :num_objects] |= torch.eye(num_objects, dtype=torch.bool, device=device)
    return allowed


def joint_association(
    blocks: Sequence[AssociationBlock],
    objects: Optional[Tensor],
    references: Optional[Tensor],
    test: Tensor,
    allowed: Tensor,
) -> tuple[Optional[Tensor], Optional[Tensor], Tensor]:
    """All streams as one token sequence ``[objects, references, test]`` under the mask ``allowed``.

    objects (B, N, C) or None; references (B, m, L, C) or None; test (B, L, C); allowed (B, S, S)
    bool from :func:`association_mask` -> the three streams after every block, same shapes.
    """
    batch, frame_tokens, dim = test.shape
    num_objects = 0 if objects is None else objects.shape[1]
    num_references = 0 if references is None else references.shape[1]
    parts = [p for p in (objects, None if references is None else references.flatten(1, 2), test) if p is not None]
    tokens = torch.cat(parts, dim=1)
    mask = allowed.unsqueeze(1)  # (B, 1, S, S), shared by the heads
    for block in blocks:
        q, k, v = block.project(tokens)
        tokens = block.update(tokens, _attend(q, k, v, mask))
    refs_end = num_objects + num_references * frame_tokens
    out_objects = tokens[:, :num_objects] if objects is not None else None
    out_references = (
        tokens[:, num_objects:refs_end].reshape(batch, num_references, frame_tokens, dim)
        if references is not None
        else None
    )
    return out_objects, out_references, tokens[:, refs_end:]
