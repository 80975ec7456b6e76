"""STML (paper eqs. 2-4): the decomposed streams equal one joint attention under the block mask,
the test frame never reaches the references or objects, references never see each other, objects
see only objects, empty object slots change nothing, and the ``joint`` form breaks exactly these."""

from __future__ import annotations

from functools import partial
from typing import Optional

import pytest
import torch
from timm.models.vision_transformer import Block
from torch import Tensor, nn

from s3.stma.stml import (
    AssociationBlock,
    association_mask,
    attend_test_stream,
    encode_reference_streams,
    joint_association,
)

DIM, HEADS, BATCH, OBJECTS, REFS, TOKENS = 16, 2, 2, 3, 2, 6

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def blocks() -> nn.ModuleList:
    torch.manual_seed(0)
    blocks = nn.ModuleList(AssociationBlock(DIM, HEADS) for _ in range(2))
    with torch.no_grad():  # larger weights than the 0.02 init, so that attention is far from uniform
        for p in blocks.parameters():
            p.normal_(0, 0.3)
    return blocks


def inputs(seed: int = 1) -> dict[str, Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "objects": torch.randn(BATCH, OBJECTS, DIM, generator=g),
        "references": torch.randn(BATCH, REFS, TOKENS, DIM, generator=g),
        "test": torch.randn(BATCH, TOKENS, DIM, generator=g),
        "object_valid": torch.tensor([[True, True, False], [True, False, True]]),
    }


def decomposed(blocks, objects, references, test, object_valid, test_sees_objects=False):
    streams = encode_reference_streams(blocks, references, objects, object_valid, test_sees_objects)
    return streams.objects, streams.references, attend_test_stream(blocks, test, streams)


def masked_joint(blocks, objects, references, test, object_valid, test_sees_objects=False, joint=False):
    allowed = association_mask(
        BATCH,
        0 if references is None else references.shape[1],
        TOKENS,
        None if objects is None else object_valid,
        test_sees_objects,
        joint=joint,
    )
    return joint_association(blocks, objects, references, test, allowed)


def test_without_context_the_test_stream_is_a_plain_vit(blocks: nn.ModuleList) -> None:
    reference = nn.ModuleList(
        Block(DIM, HEADS, qkv_bias=True, norm_layer=partial(nn.LayerNorm, eps=1e-6)) for _ in range(2)
    )
    reference.load_state_dict(blocks.state_dict())
    test = inputs()["test"]
    expected = test
    for block in reference:
        expected = block(expected)
    torch.testing.assert_close(attend_test_stream(blocks, test), expected, atol=1e-5, rtol=0)


def test_block_mask_layout() -> None:
    """Token order [o0, o1 (empty), r0, r1, t], one token per frame."""
    valid = torch.tensor([[True, False]])
    expected = torch.tensor(
        [
            [1, 0, 0, 0, 0],  # o0: the real objects
            [1, 1, 0, 0, 0],  # o1 (empty): the real objects and itself
            [1, 0, 1, 0, 0],  # r0: itself and the objects
            [1, 0, 0, 1, 0],  # r1
            [0, 0, 1, 1, 1],  # t: all references and itself, no objects
        ],
        dtype=torch.bool,
    )
    assert torch.equal(association_mask(1, 2, 1, valid, test_sees_objects=False)[0], expected)
    without_references = association_mask(1, 0, 1, valid, test_sees_objects=True)[0]
    assert torch.equal(without_references, torch.tensor([[1, 0, 0], [1, 1, 0], [1, 0, 1]], dtype=torch.bool))
    joint = association_mask(1, 2, 1, valid, test_sees_objects=False, joint=True)[0]
    expected_joint = torch.ones(5, 5, dtype=torch.bool)
    expected_joint[:, 1] = False
    expected_joint[1, 1] = True
    assert torch.equal(joint, expected_joint)
    no_objects = association_mask(1, 2, 1, None, test_sees_objects=False)[0]
    assert torch.equal(no_objects, torch.tensor([[1, 0, 0], [0, 1, 0], [1, 1, 1]], dtype=torch.bool))


@pytest.mark.parametrize("with_objects", [True, False])
@pytest.mark.parametrize("with_references", [True, False])
def test_decomposed_equals_joint_attention_under_the_block_mask(
    blocks: nn.ModuleList, with_objects: bool, with_references: bool
) -> None:
    x = inputs()
    objects = x["objects"] if with_objects else None
    references = x["references"] if with_references else None
    valid = x["object_valid"] if with_objects else None
    sees_objects = not with_references
    got = decomposed(blocks, objects, references, x["test"], valid, sees_objects)
    expected = masked_joint(blocks, objects, references, x["test"], valid, sees_objects)
    for name, a, b in zip(("objects", "references", "test"), got, expected):
        assert (a is None) == (b is None), name
        if a is not None:
            torch.testing.assert_close(a, b, atol=1e-5, rtol=0, msg=name)


def perturbed(x: dict[str, Tensor], name: str, index: Optional[int] = None) -> dict[str, Tensor]:
    y = dict(x)
    y[name] = x[name].clone()
    target = y[name] if index is None else y[name][:, index]
    target.add_(torch.randn_like(target))
    return y


def run(blocks, x: dict[str, Tensor], form: str) -> tuple[Tensor, Tensor, Tensor]:
    if form == "decomposed":
        return decomposed(blocks, **x)
    return masked_joint(blocks, **x, joint=form == "joint")


@pytest.mark.parametrize("form", ["decomposed", "masked_joint", "joint"])
def test_the_test_frame_never_reaches_references_or_objects(blocks: nn.ModuleList, form: str) -> None:
    x = inputs()
    objects, references, test = run(blocks, x, form)
    objects2, references2, test2 = run(blocks, perturbed(x, "test"), form)
    assert not torch.allclose(test, test2)
    isolated = torch.equal(objects, objects2) and torch.equal(references, references2)
    assert isolated == (form != "joint")


@pytest.mark.parametrize("form", ["decomposed", "masked_joint", "joint"])
def test_references_never_see_each_other(blocks: nn.ModuleList, form: str) -> None:
    x = inputs()
    _, references, test = run(blocks, x, form)
    _, references2, test2 = run(blocks, perturbed(x, "references", index=1), form)
    assert not torch.allclose(references[:, 1], references2[:, 1])
    assert not torch.allclose(test, test2)  # the test frame reads every reference
    assert torch.equal(references[:, 0], references2[:, 0]) == (form != "joint")


@pytest.mark.parametrize("form", ["decomposed", "masked_joint", "joint"])
def test_objects_depend_only_on_objects(blocks: nn.ModuleList, form: str) -> None:
    x = inputs()
    objects, references, test = run(blocks, x, form)
    objects2, _, _ = run(blocks, perturbed(perturbed(x, "references"), "test"), form)
    assert torch.equal(objects, objects2) == (form != "joint")
    objects3, references3, test3 = run(blocks, perturbed(x, "objects", index=0), form)
    assert not torch.allclose(objects[:, 0], objects3[:, 0])
    assert not torch.allclose(references, references3)  # references read the objects (eq. 3)
    assert not torch.allclose(test, test3)  # ... and the test frame reads the references (eq. 4)


@pytest.mark.parametrize("form", ["decomposed", "joint"])
def test_an_empty_object_slot_changes_nothing(blocks: nn.ModuleList, form: str) -> None:
    x = inputs()
    x["object_valid"] = torch.ones(BATCH, OBJECTS, dtype=torch.bool)
    with_empty = dict(x)
    with_empty["objects"] = torch.cat([x["objects"], 1e4 * torch.ones(BATCH, 1, DIM)], dim=1)
    with_empty["object_valid"] = torch.cat([x["object_valid"], torch.zeros(BATCH, 1, dtype=torch.bool)], dim=1)
    objects, references, test = run(blocks, x, form)
    objects2, references2, test2 = run(blocks, with_empty, form)
    assert all(torch.isfinite(t).all() for t in (objects2, references2, test2))
    torch.testing.assert_close(objects2[:, :OBJECTS], objects, atol=1e-5, rtol=0)
    torch.testing.assert_close(references2, references, atol=1e-5, rtol=0)
    torch.testing.assert_close(test2, test, atol=1e-5, rtol=0)


def test_permuting_object_slots_permutes_the_object_stream(blocks: nn.ModuleList) -> None:
    x = inputs()
    order = torch.tensor([2, 0, 1])
    y = dict(x, objects=x["objects"][:, order], object_valid=x["object_valid"][:, order])
    objects, references, test = decomposed(blocks, **x)
    objects2, references2, test2 = decomposed(blocks, **y)
    real = y["object_valid"]  # empty slots carry no meaning; real slot j of y is slot order[j] of x
    torch.testing.assert_close(objects2[real], objects[:, order][real], atol=1e-5, rtol=0)
    torch.testing.assert_close(references2, references, atol=1e-5, rtol=0)
    torch.testing.assert_close(test2, test, atol=1e-5, rtol=0)
