"""STMANetwork: every per-frame operation has the documented shapes (spec 5.1, N = 1..3 objects,
m = 0..3 references, 64x96 and 480x864), object slots are permutation-equivariant, empty slots
change nothing and never give NaN, every switch runs, and every parameter learns."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from stma_helpers import (
    PER_OBJECT,
    TINY_VIT,
    Memory,
    frame_context,
    memorise,
    random_masks,
    segment_frame,
    tiny_network,
)

from s3.config import load_model_config
from s3.stma.network import STMANetwork

pytestmark = pytest.mark.usefixtures("one_thread")

H, W = 64, 96
h, w = H // 16, W // 16


@pytest.fixture(scope="module")
def net() -> STMANetwork:
    return tiny_network()


def clip(
    num_objects: int, frames: int = 3, seed: int = 0, size: tuple[int, int] = (H, W)
) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(frames, 1, 3, *size, generator=g)
    masks = torch.stack([random_masks(1, num_objects, *size, generator=g) for _ in range(frames)])
    return images, masks


@pytest.mark.parametrize("num_objects", [1, 2, 3])
def test_every_operation_has_the_documented_shapes(net: STMANetwork, num_objects: int) -> None:
    cfg, n, dim = net.cfg, num_objects, net.pixel_encoder.embed_dim
    images, masks = clip(n, frames=4)
    with torch.no_grad():
        memory = memorise(net, images[:3], masks[:3])
        assert memory.tokens.shape == (1, 3, h * w, dim)
        assert memory.key.shape == (1, cfg.key_dim, 3 * h * w) and memory.shrinkage.shape == (1, 1, 3 * h * w)
        assert memory.value.shape == (1, n, cfg.value_dim, 3 * h * w)
        objects = net.object_tokens(memory.value)
        assert objects.shape == (1, n, dim)
        for m in range(4):
            stem = net.encode_stem(images[3])
            assert stem.tokens.shape == (1, h * w, dim) and stem.grid == (h, w)
            context = net.prepare_context(memory.tokens[:, :m], objects)
            features = net.associate(stem, context)
            assert features.f16.shape == (1, dim, h, w)
            assert features.f8.shape == (1, cfg.backbone.widths[1], H // 8, W // 8)
            assert features.f4.shape == (1, cfg.backbone.widths[0], H // 4, W // 4)
            assert features.pix_feat.shape == (1, cfg.pixel_dim, h, w)
            key, shrinkage, selection = net.transform_key(features.f16)
            assert key.shape == selection.shape == (1, cfg.key_dim, h, w) and shrinkage.shape == (1, 1, h, w)
            assert shrinkage.min() >= 1 and 0 <= selection.min() and selection.max() <= 1
            readout, usage = net.read_memory(key, selection, memory.key, memory.shrinkage, memory.value, top_k=30)
            assert readout.shape == (1, n, cfg.value_dim, h, w) and usage.shape == (1, 3 * h * w)
            fused = net.fuse(features.pix_feat, readout)
            assert fused.shape == (1, n, cfg.decoder_dims[0], h, w)
            logits, prob = net.segment(features, fused)
            assert logits.shape == prob.shape == (1, n + 1, H, W)
            torch.testing.assert_close(prob.sum(1), torch.ones(1, H, W))
            value = net.encode_mask(images[3], features.pix_feat, prob[:, 1:])
            assert value.shape == (1, n, cfg.value_dim, h, w)


@pytest.mark.parametrize("num_objects, num_references", [(1, 0), (3, 3)])
def test_shapes_at_480x864(net: STMANetwork, num_objects: int, num_references: int) -> None:
    big_h, big_w, n, m = 480, 864, num_objects, num_references
    grid = (big_h // 16) * (big_w // 16)
    g = torch.Generator().manual_seed(0)
    image = torch.rand(1, 3, big_h, big_w, generator=g)
    dim, cfg = net.pixel_encoder.embed_dim, net.cfg
    memory = Memory(
        tokens=torch.randn(1, m, grid, dim, generator=g),
        masks=torch.zeros(1, m, n, big_h, big_w),
        key=torch.randn(1, cfg.key_dim, 2 * grid, generator=g),
        shrinkage=1 + torch.rand(1, 1, 2 * grid, generator=g),
        value=torch.randn(1, n, cfg.value_dim, 2 * grid, generator=g),
    )
    with torch.no_grad():
        logits, prob, features = segment_frame(net, image, memory)
        assert features.f16.shape == (1, dim, 30, 54) and features.f4.shape == (1, cfg.backbone.widths[0], 120, 216)
        assert logits.shape == prob.shape == (1, n + 1, big_h, big_w) and torch.isfinite(logits).all()
        if n == 1:
            assert net.encode_mask(image, features.pix_feat, prob[:, 1:]).shape == (1, 1, cfg.value_dim, 30, 54)


def test_the_first_frame_is_plain_self_attention(net: STMANetwork) -> None:
    image = clip(1)[0][0]
    with torch.no_grad():
        stem = net.encode_stem(image)
        plain = net.associate(stem)
        empty = net.associate(stem, net.prepare_context(None, None))
        no_refs = net.associate(stem, net.prepare_context(stem.tokens[:, None][:, :0]))
    assert torch.equal(plain.f16, empty.f16) and torch.equal(plain.f16, no_refs.f16)


def test_permuting_object_ids_permutes_the_outputs(net: STMANetwork) -> None:
    images, masks = clip(3, frames=3, seed=1)
    order = torch.tensor([2, 0, 1])
    with torch.no_grad():
        logits, _, _ = segment_frame(net, images[2], memorise(net, images[:2], masks[:2]))
        permuted, _, _ = segment_frame(net, images[2], memorise(net, images[:2], masks[:2, :, order]))
    torch.testing.assert_close(permuted[:, 1:], logits[:, 1:][:, order], atol=1e-4, rtol=0)
    torch.testing.assert_close(permuted[:, 0], logits[:, 0], atol=1e-4, rtol=0)


def test_an_empty_slot_changes_nothing_and_gives_no_nan(net: STMANetwork) -> None:
    images, masks = clip(2, frames=3, seed=2)
    padded = torch.cat([masks, torch.zeros(3, 1, 1, H, W)], dim=2)  # a third, empty slot
    valid = torch.tensor([[True, True, False]])
    with torch.no_grad():
        _, prob, _ = segment_frame(net, images[2], memorise(net, images[:2], masks[:2]))
        logits3, prob3, _ = segment_frame(
            net, images[2], memorise(net, images[:2], padded[:2], valid), object_valid=valid
        )
    assert torch.isfinite(logits3).all() and torch.isfinite(prob3).all()
    torch.testing.assert_close(prob3[:, :3], prob, atol=1e-5, rtol=0)
    assert prob3[:, 3].max() < 1e-5


def test_empty_slots_get_zero_object_tokens(net: STMANetwork) -> None:
    value = torch.randn(1, 3, net.cfg.value_dim, 10)
    tokens = net.object_tokens(value, torch.tensor([[True, False, True]]))
    assert torch.equal(tokens[0, 1], torch.zeros_like(tokens[0, 1])) and tokens[0, 0].abs().sum() > 0


def test_reference_mask_embedding_adds_the_patch_embedded_foreground() -> None:
    net = tiny_network(["model.reference_mask_embed=true"])
    _, masks = clip(2, frames=2)
    tokens = torch.randn(1, 2, h * w, net.pixel_encoder.embed_dim)
    reference_masks = masks.transpose(0, 1)  # (1, m=2, N=2, H, W)
    foreground = reference_masks.sum(2).clamp(0, 1).flatten(0, 1).unsqueeze(1)  # (2, 1, H, W)
    proj = net.mask_embed.proj
    expected = F.conv2d(foreground, proj.weight, proj.bias, stride=16).flatten(2).transpose(1, 2).unsqueeze(0)
    torch.testing.assert_close(net.prepare_references(tokens, reference_masks), tokens + expected)
    assert torch.equal(tiny_network().prepare_references(tokens, reference_masks), tokens)


@pytest.mark.parametrize(
    "overrides",
    [
        ["model.stml.attention=joint"],
        ["model.stml.objects=false"],
        ["model.stml.references=false"],
        ["model.key_dim=null"],
        ["model.object_embed=slot"],
        ["model.reference_mask_embed=true"],
        TINY_VIT,
    ],
)
def test_every_switch_runs_a_clip(overrides: list[str]) -> None:
    variant = tiny_network(overrides)
    images, masks = clip(2, frames=3)
    with torch.no_grad():
        memory = memorise(variant, images[:2], masks[:2])
        logits, _, features = segment_frame(variant, images[2], memory)
    assert logits.shape == (1, 3, H, W) and torch.isfinite(logits).all()
    if overrides == ["model.key_dim=null"]:
        assert memory.shrinkage is None and memory.key.shape == (1, variant.pixel_encoder.embed_dim, 2 * h * w)
    if overrides == TINY_VIT:
        assert features.f8.shape == (1, 16, H // 8, W // 8) and features.f4.shape == (1, 8, H // 4, W // 4)


def test_the_joint_switch_changes_the_output_but_not_the_weights() -> None:
    images, masks = clip(2, frames=3)
    outputs = []
    for overrides in ([], ["model.stml.attention=joint"]):
        variant = tiny_network(overrides)
        with torch.no_grad():
            outputs.append(segment_frame(variant, images[2], memorise(variant, images[:2], masks[:2]))[0])
    assert not torch.allclose(outputs[0], outputs[1], atol=1e-4)


def test_per_object_association_shapes_and_equivariance() -> None:
    variant = tiny_network(PER_OBJECT)
    images, masks = clip(3, frames=3, seed=3)
    order = torch.tensor([1, 2, 0])
    reference_masks = masks[:2].transpose(0, 1)  # (1, m=2, N=3, H, W)
    with torch.no_grad():
        tokens = torch.stack([variant.encode_stem(images[t]).tokens for t in range(2)], dim=1)
        stem = variant.encode_stem(images[2])
        features = variant.associate_per_object(stem, tokens, reference_masks)
        dim = variant.pixel_encoder.embed_dim
        assert features.f16.shape == (3, dim, h, w) and features.pix_feat.shape == (3, variant.cfg.pixel_dim, h, w)
        logits, prob = variant.segment_per_object(features, 3)
        permuted = variant.segment_per_object(
            variant.associate_per_object(stem, tokens, reference_masks[:, :, order]), 3
        )[0]
    assert logits.shape == prob.shape == (1, 4, H, W)
    torch.testing.assert_close(permuted[:, 1:], logits[:, 1:][:, order], atol=1e-5, rtol=0)
    for operation in (
        lambda: variant.encode_mask(images[0], features.pix_feat[:1], masks[0]),
        lambda: variant.transform_key(features.f16),
    ):
        with pytest.raises(RuntimeError, match=r"the temporal memory \(model\.id_association=memory\) is not part"):
            operation()


@pytest.mark.parametrize("overrides", [[], PER_OBJECT, TINY_VIT])
def test_every_parameter_learns_in_a_two_frame_clip(overrides: list[str]) -> None:
    variant = tiny_network(overrides).train()
    images, masks = clip(2, frames=2, seed=4)
    if variant.cfg.id_association == "memory":
        memory = memorise(variant, images[:1], masks[:1])
        logits, _, _ = segment_frame(variant, images[1], memory, top_k=None)
    else:
        tokens = variant.encode_stem(images[0]).tokens.unsqueeze(1)
        features = variant.associate_per_object(variant.encode_stem(images[1]), tokens, masks[:1].transpose(0, 1))
        logits, _ = variant.segment_per_object(features, 2)
    target = torch.cat([1 - masks[1].sum(1, keepdim=True), masks[1]], dim=1).argmax(1)
    F.cross_entropy(logits, target).backward()
    still = [n for n, p in variant.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert still == []


def test_the_frame_size_is_checked(net: STMANetwork) -> None:
    with pytest.raises(ValueError, match=r"not a multiple of model\.pad_multiple=16; pad it"):
        net.encode_stem(torch.rand(1, 3, 70, 96))


def test_context_is_reusable_across_test_frames(net: STMANetwork) -> None:
    images, masks = clip(2, frames=4, seed=5)
    with torch.no_grad():
        memory = memorise(net, images[:2], masks[:2])
        context = frame_context(net, memory)
        for t in (2, 3):
            stem = net.encode_stem(images[t])
            assert torch.equal(net.associate(stem, context).f16, net.associate(stem, frame_context(net, memory)).f16)


def test_aggregation_is_soft_aggregation_and_keeps_its_gradient_when_saturated() -> None:
    """In the normal range the aggregated logits equal the clamped soft aggregation of the sigmoid
    probabilities; a decoder saturated on the wrong answer (|x| > 16, where the clamp has no gradient)
    still gets a gradient, and an empty slot's probability is exactly 0."""
    from s3.model.aggregation import soft_aggregate

    x = torch.randn(2, 3, 4, 5, generator=torch.Generator().manual_seed(0)) * 2  # |x| < 8
    logits, prob = STMANetwork._aggregate(x, None)
    # (beyond, the fp32 reference loses digits: 1 - sigmoid(x) underflows its mantissa near |x| = 10)
    expected = F.interpolate(soft_aggregate(torch.sigmoid(x), dim=1), scale_factor=4, mode="bilinear")
    torch.testing.assert_close(logits, expected, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(prob, logits.softmax(1))

    saturated = torch.full((1, 2, 2, 2), 40.0, requires_grad=True)  # both objects certain everywhere
    logits, _ = STMANetwork._aggregate(saturated, torch.tensor([[1.0, 1.0]]))
    F.cross_entropy(logits, torch.zeros(1, 8, 8, dtype=torch.int64)).backward()  # the truth is background
    assert saturated.grad.abs().min() > 0.1
    clamped = torch.full((1, 2, 2, 2), 40.0, requires_grad=True)
    F.cross_entropy(soft_aggregate(torch.sigmoid(clamped)), torch.zeros(1, 2, 2, dtype=torch.int64)).backward()
    assert clamped.grad.abs().max() == 0  # what the clamp does

    _, prob = STMANetwork._aggregate(torch.randn(1, 3, 2, 2), torch.tensor([[1.0, 0.0, 1.0]]))
    assert prob[:, 2].max() == 0 and torch.isfinite(prob).all()


def test_mask_encoder_width_sets_the_trunk() -> None:
    """``model.mask_encoder_width``: a narrow ResNet-18 trunk (16/32/64 channels, ``stma_tiny``) or
    ResNet-18's own 64/128/256, which the paper configs keep (its weights need it)."""
    for width in (16, 64):
        cfg = dataclasses.replace(load_model_config("stma_tiny"), mask_encoder_width=width)
        with torch.device("meta"):
            net = STMANetwork(cfg)
        assert net.mask_encoder is not None and net.mask_encoder.layer3[0].conv1.out_channels == 4 * width
    assert load_model_config("stma_tiny").mask_encoder_width == 16
    assert load_model_config("stma_convvitb").mask_encoder_width == 64
