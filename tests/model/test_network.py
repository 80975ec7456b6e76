"""The assembled network: shapes for every per-frame operation, padding, and a 3-frame
training forward/backward (s3.train.recurrent): the frozen ViT gets no gradient and keeps no
graph, every trainable parameter gets a gradient."""

from __future__ import annotations

import pytest
import torch

from s3.config import load_model_config
from s3.model.network import S3Network
from s3.model.padding import pad_to_multiple, unpad
from s3.train.recurrent import RecurrentClipModel


@pytest.fixture(scope="module")
def tiny() -> S3Network:
    torch.manual_seed(0)
    return S3Network(load_model_config("s3_tiny"))


def random_masks(b: int, n: int, h: int, w: int) -> torch.Tensor:
    """Disjoint soft-ish masks: a random label map turned one-hot, background excluded."""
    labels = torch.randint(0, n + 1, (b, h, w))
    return torch.stack([(labels == k + 1).float() for k in range(n)], dim=1)


def test_every_operation_has_the_documented_shapes(tiny: S3Network) -> None:
    cfg = tiny.cfg
    b, n, H, W = 1, 2, 64, 96
    h, w = H // 16, W // 16
    image = torch.rand(b, 3, H, W)
    masks = random_masks(b, n, H, W)
    tiny.eval()
    with torch.no_grad():
        f = tiny.encode_image(image)
        assert f.f16.shape[-2:] == (h, w) and f.f8.shape[-2:] == (H // 8, W // 8) and f.f4.shape[-2:] == (H // 4, W // 4)
        assert f.pix_feat.shape == (b, cfg.pixel_dim, h, w)
        key, shrinkage, selection = tiny.transform_key(f.f16)
        assert key.shape == selection.shape == (b, cfg.key_dim, h, w) and shrinkage.shape == (b, 1, h, w)
        assert shrinkage.min() >= 1 and 0 <= selection.min() and selection.max() <= 1
        sensory = tiny.zero_sensory(f, n)
        value, sensory, summaries = tiny.encode_mask(image, f.pix_feat, sensory, masks)
        assert value.shape == (b, n, cfg.value_dim, h, w)
        assert sensory.shape == (b, n, cfg.sensory_dim, h, w)
        assert summaries.shape == (b, n, cfg.query.num_queries, cfg.embed_dim + 1)
        readout, usage = tiny.read_pixel_memory(key, selection, key.flatten(2), shrinkage.flatten(2), value.flatten(3), top_k=5)
        assert readout.shape == (b, n, cfg.value_dim, h, w) and usage.shape == (b, h * w)
        pixel = tiny.fuse_pixel_readout(f.pix_feat, readout, sensory, masks)
        assert pixel.shape == (b, n, cfg.embed_dim, h, w)
        pixel, aux = tiny.read_object_queries(pixel, summaries.unsqueeze(2), need_aux=True)
        assert pixel.shape == (b, n, cfg.embed_dim, h, w)
        assert len(aux["logits"]) == cfg.query.num_blocks + 1
        aux_out = tiny.compute_aux(f.pix_feat, sensory, aux)
        assert aux_out["sensory_logits"].shape == (b, n + 1, h, w)
        assert aux_out["query_logits"].shape == (b, n + 1, cfg.query.num_blocks + 1, h, w)
        new_sensory, logits, prob = tiny.decode(f, pixel, sensory)
        assert new_sensory.shape == sensory.shape and not torch.equal(new_sensory, sensory)
        assert logits.shape == prob.shape == (b, n + 1, H, W)
        torch.testing.assert_close(prob.sum(1), torch.ones(b, H, W))


def test_segment_frame_is_fusion_queries_and_decoder_in_order(tiny: S3Network) -> None:
    """The one per-frame step equals its parts called by hand, and reads zeros for absent memories."""
    b, n, H, W = 1, 2, 64, 96
    image, masks = torch.rand(b, 3, H, W), random_masks(b, n, H, W)
    tiny.eval()
    with torch.no_grad():
        f = tiny.encode_image(image)
        key, shrinkage, selection = tiny.transform_key(f.f16)
        value, sensory, summaries = tiny.encode_mask(image, f.pix_feat, tiny.zero_sensory(f, n), masks)
        readout, _ = tiny.read_pixel_memory(key, selection, key.flatten(2), shrinkage.flatten(2), value.flatten(3), top_k=5)
        object_memory = summaries.unsqueeze(2)
        out = tiny.segment_frame(f, readout, sensory, masks, object_memory, need_aux=True)

        pixel = tiny.fuse_pixel_readout(f.pix_feat, readout, sensory, masks)
        pixel, aux = tiny.read_object_queries(pixel, object_memory, need_aux=True)
        aux_out = tiny.compute_aux(f.pix_feat, sensory, aux)
        new_sensory, logits, prob = tiny.decode(f, pixel, sensory)
        assert torch.equal(out.sensory, new_sensory) and torch.equal(out.logits, logits) and torch.equal(out.prob, prob)
        assert out.aux is not None and torch.equal(out.aux["query_logits"], aux_out["query_logits"])

        empty = tiny.segment_frame(f, None, sensory, masks, None)
        zeros = tiny.segment_frame(
            f, torch.zeros_like(readout), sensory, masks, torch.zeros_like(object_memory)
        )
        assert empty.aux is None and torch.equal(empty.prob, zeros.prob)
        kept = tiny.segment_frame(f, readout, sensory, masks, object_memory, update_sensory=False)
        assert torch.equal(kept.sensory, sensory) and torch.equal(kept.prob, out.prob)


def test_selector_removes_padded_objects(tiny: S3Network) -> None:
    image = torch.rand(1, 3, 64, 64)
    tiny.eval()
    with torch.no_grad():
        f = tiny.encode_image(image)
        pixel = torch.randn(1, 3, tiny.cfg.embed_dim, 4, 4)
        sensory = tiny.zero_sensory(f, 3)
        _, _, prob = tiny.decode(f, pixel, sensory, selector=torch.tensor([[1.0, 1.0, 0.0]]))
    assert prob[:, 3].max() < 1e-5  # the padded third object gets (almost) nothing


def test_odd_sizes_are_padded_then_cropped_back(tiny: S3Network) -> None:
    image = torch.rand(1, 3, 70, 100)
    padded, pads = pad_to_multiple(image, tiny.cfg.pad_multiple)
    assert padded.shape[-2:] == (96, 128)
    assert torch.equal(unpad(padded, pads), image)
    tiny.eval()
    with torch.no_grad():
        f = tiny.encode_image(padded)
        sensory = tiny.zero_sensory(f, 2)
        pixel = torch.randn(1, 2, tiny.cfg.embed_dim, *f.pix_feat.shape[-2:])
        _, _, prob = tiny.decode(f, pixel, sensory)
    assert unpad(prob, pads).shape == (1, 3, 70, 100)
    with pytest.raises(ValueError, match="not a multiple of model.pad_multiple=32; pad it"):
        tiny.encode_image(image)


def test_three_frame_training_forward_backward() -> None:
    torch.manual_seed(0)
    net = S3Network(load_model_config("s3_tiny"))
    with torch.no_grad():  # zero-initialised projections (deformable offsets/weights) would block gradients
        for p in net.parameters():
            if p.requires_grad and not p.any():
                p.normal_(0, 0.02)
    net.train()
    vit = net.pixel_encoder.vit
    saved_vit_outputs = []
    vit.register_forward_hook(lambda m, i, o: saved_vit_outputs.append(o))
    for block in vit.blocks:
        block.register_forward_hook(lambda m, i, o: saved_vit_outputs.append(o))
    frames = torch.rand(2, 3, 3, 64, 64)
    first_labels = torch.randint(0, 3, (2, 64, 64))
    clip_model = RecurrentClipModel(net, num_ref_frames=3, deep_update_prob=1.0)
    out = clip_model(frames, first_labels, torch.ones(2, 2), torch.Generator().manual_seed(0))
    assert out.logits.shape == (2, 2, 3, 64, 64)  # frames 1 and 2, background + 2 objects
    loss = out.logits.square().mean() + out.sensory_logits.mean() + out.query_logits.mean()
    loss.backward()
    assert not vit.training
    assert saved_vit_outputs and all(o.grad_fn is None and not o.requires_grad for o in saved_vit_outputs)
    assert all(p.grad is None for p in vit.parameters())
    missing = [n for n, p in net.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.abs().sum() > 0)]
    assert missing == []
