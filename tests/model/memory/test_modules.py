"""Memory-side modules, mask decoder and aux computer: shapes, chunking, frozen BatchNorms, the GRU gate,
initialisation, ResNet-18 loading and parameter counts at the reference dimensions.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import assert_close
from torchvision.models import resnet18

from s3.model.aggregation import others_mask
from s3.model.aux_computer import AuxComputer
from s3.model.decoder import MaskDecoder
from s3.model.memory import (
    KeyProjection,
    MaskEncoder,
    ObjectSummarizer,
    PixelFuser,
    SensoryDeepUpdater,
    SensoryUpdater,
    sensory_gru_gate,
)

B, H, W = 1, 64, 96
h, w = H // 16, W // 16
PIXEL, VALUE, SENSORY, KEY = 64, 64, 32, 16
# Chunking changes only the conv batch size; CPU conv kernels may then sum in another order (about 1e-6 relative).
CHUNK_ATOL = 2e-5


def num_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def random_masks(num_objects: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    masks = torch.softmax(torch.randn(B, num_objects + 1, H, W, generator=g) * 3, dim=1)[:, 1:]
    return masks, others_mask(masks)


def group(num_objects: int, channels: int, size: tuple[int, int] = (h, w), seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, num_objects, channels, *size, generator=g)


@pytest.fixture(scope="module")
def small_mask_encoder() -> MaskEncoder:
    torch.manual_seed(0)
    return MaskEncoder(PIXEL, VALUE, SENSORY).eval()


# ---------------------------------------------------------------------------------------- key projection


def test_key_projection_outputs_and_init():
    torch.manual_seed(0)
    proj = KeyProjection(96, PIXEL, KEY)
    f16 = torch.randn(2, 96, h, w)
    key, shrinkage, selection = proj(f16)
    assert key.shape == (2, KEY, h, w) and shrinkage.shape == (2, 1, h, w) and selection.shape == (2, KEY, h, w)
    assert (shrinkage >= 1).all() and ((selection > 0) & (selection < 1)).all()
    assert_close(shrinkage, proj.shrinkage_proj(proj.feat_proj(f16)) ** 2 + 1, 1e-6, "shrinkage")
    key_only, no_shrinkage, no_selection = proj(f16, need_shrinkage=False, need_selection=False)
    assert no_shrinkage is None and no_selection is None and torch.equal(key_only, key)
    weight = proj.key_proj.weight.flatten(1)
    assert_close(weight @ weight.T, torch.eye(KEY), 1e-5, "orthogonal key weight")
    assert torch.count_nonzero(proj.key_proj.bias) == 0
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert all(t.dtype == torch.float32 for t in proj(f16))


# ----------------------------------------------------------------------------------------- sensory updates


def test_gru_gate_matches_direct_formula():
    g = torch.Generator().manual_seed(2)
    sensory = torch.randn(B, 2, SENSORY, h, w, generator=g)
    gates = torch.randn(B, 2, 3 * SENSORY, h, w, generator=g) * 2
    f = torch.sigmoid(gates[:, :, :SENSORY])
    u = torch.sigmoid(gates[:, :, SENSORY : 2 * SENSORY])
    c = torch.tanh(gates[:, :, 2 * SENSORY :])
    assert_close(sensory_gru_gate(sensory, gates), f * sensory * (1 - u) + u * c, 1e-6, "GRU gate")


def test_deep_updater_is_conv_then_gate_in_fp32():
    torch.manual_seed(0)
    updater = SensoryDeepUpdater(VALUE, SENSORY)
    value, sensory = group(2, VALUE), group(2, SENSORY, seed=4)
    stacked = torch.cat([value, sensory], dim=2).flatten(0, 1)
    gates = F.conv2d(stacked, updater.transform.weight, updater.transform.bias, padding=1)
    expected = sensory_gru_gate(sensory, gates.view(B, 2, 3 * SENSORY, h, w))
    assert_close(updater(value, sensory), expected, 1e-5, "deep update")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        autocast_out = updater(value, sensory)
    assert autocast_out.dtype == torch.float32
    assert_close(autocast_out, expected, 1e-5, "deep update under autocast")


def test_sensory_updater_shapes():
    torch.manual_seed(0)
    updater = SensoryUpdater(in_dims=(32, 16, 17), mid_dim=24, sensory_dim=SENSORY)
    new = updater(group(3, 32), group(3, 16, (2 * h, 2 * w)), group(3, 17, (4 * h, 4 * w)), group(3, SENSORY))
    assert new.shape == (B, 3, SENSORY, h, w) and new.dtype == torch.float32


# --------------------------------------------------------------------------------------------- mask encoder


@pytest.mark.parametrize("num_objects", [2, 3])
def test_mask_encoder_shapes_and_chunking(small_mask_encoder, num_objects):
    image, pix_feat = torch.randn(B, 3, H, W), torch.randn(B, PIXEL, h, w)
    masks, others = random_masks(num_objects)
    sensory = group(num_objects, SENSORY)
    with torch.no_grad():
        value, new_sensory = small_mask_encoder(image, pix_feat, sensory, masks, others)
        chunked_value, chunked_sensory = small_mask_encoder(image, pix_feat, sensory, masks, others, chunk_size=1)
        _, kept_sensory = small_mask_encoder(image, pix_feat, sensory, masks, others, deep_update=False)
    assert value.shape == (B, num_objects, VALUE, h, w) and new_sensory.shape == sensory.shape
    assert not torch.equal(new_sensory, sensory) and kept_sensory is sensory
    assert_close(chunked_value, value, CHUNK_ATOL, "chunked value")
    assert_close(chunked_sensory, new_sensory, CHUNK_ATOL, "chunked sensory")


def test_mask_encoder_batch_norms_stay_frozen(small_mask_encoder):
    encoder = small_mask_encoder.train()
    batch_norms = [m for m in encoder.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert encoder.training and len(batch_norms) == 15
    assert not any(bn.training for bn in batch_norms)
    before = {k: v.clone() for k, v in encoder.state_dict().items() if "running" in k or "num_batches" in k}
    masks, others = random_masks(2)
    encoder(torch.randn(B, 3, H, W), torch.randn(B, PIXEL, h, w), group(2, SENSORY), masks, others)
    after = encoder.state_dict()
    assert all(torch.equal(after[k], v) for k, v in before.items())
    encoder.eval()


def test_mask_encoder_without_deep_updater():
    encoder = MaskEncoder(PIXEL, VALUE, SENSORY, deep_update=False)
    assert encoder.sensory_update is None
    masks, others = random_masks(2)
    args = (torch.randn(B, 3, H, W), torch.randn(B, PIXEL, h, w), group(2, SENSORY), masks, others)
    with pytest.raises(ValueError, match="deep_update"):
        encoder(*args)
    value, _ = encoder(*args, deep_update=False)
    assert value.shape == (B, 2, VALUE, h, w)


def test_load_resnet18_state_dict():
    encoder = MaskEncoder(PIXEL, VALUE, SENSORY)
    torch.manual_seed(7)
    source = resnet18(weights=None).state_dict()
    encoder.load_resnet18_state_dict(source)
    conv1 = encoder.conv1.weight.detach()
    assert conv1.shape == (64, 5, 7, 7)
    assert torch.equal(conv1[:, :3], source["conv1.weight"])
    extra = conv1[:, 3:].flatten(1)  # (64, 98): orthogonal init gives orthonormal rows
    assert_close(extra @ extra.T, torch.eye(64), 1e-4, "orthogonal extra channels")
    loaded = encoder.state_dict()
    for key in ("bn1.running_var", "layer1.0.conv1.weight", "layer3.1.bn2.bias", "layer2.0.downsample.0.weight"):
        assert torch.equal(loaded[key], source[key]), key

    corrupted = {k: v for k, v in source.items() if k != "layer2.1.conv1.weight"}
    corrupted["layer3.0.conv2.weight"] = torch.zeros(256, 128, 3, 3)
    with pytest.raises(ValueError, match=r"layer2\.1\.conv1\.weight(.|\n)*layer3\.0\.conv2\.weight"):
        encoder.load_resnet18_state_dict(corrupted)


# ----------------------------------------------------------------------------------------------- summarizer


def test_object_summarizer_shapes_and_empty_mask():
    torch.manual_seed(0)
    summarizer = ObjectSummarizer(VALUE, 48, num_summaries=8)
    masks, _ = random_masks(3)
    masks[:, 1] = 0
    summaries, logits = summarizer(masks, group(3, VALUE), need_weight_logits=True)
    assert summaries.shape == (B, 3, 8, 49) and logits.shape == (B, 3, h, w, 8)
    assert torch.count_nonzero(summaries[:, 1, :4]) == 0, "foreground summaries of an empty mask must be empty"
    assert (summaries[:, 1, 4:, -1] > 0).all() and (summaries[:, 0, :, -1] > 0).all()
    assert summarizer(masks, group(3, VALUE))[1] is None


def test_object_summarizer_pools_with_sigmoid_weights():
    torch.manual_seed(0)
    summarizer = ObjectSummarizer(VALUE, 48, num_summaries=4, add_pe=False)
    masks, _ = random_masks(2)
    value = group(2, VALUE)
    summaries, logits = summarizer(masks, value, need_weight_logits=True)
    small = F.interpolate(masks, size=(h, w), mode="area").unsqueeze(-1)
    weights = torch.sigmoid(logits) * torch.cat([small, small, 1 - small, 1 - small], dim=-1)
    features = summarizer.feature_pred(summarizer.input_proj(value.permute(0, 1, 3, 4, 2)))
    expected_sums = (weights.unsqueeze(-1) * features.unsqueeze(-2)).sum(dim=(2, 3))
    assert_close(summaries[..., :-1], expected_sums, 1e-4, "weighted sums")
    assert_close(summaries[..., -1], weights.sum(dim=(2, 3)), 1e-4, "areas")


# --------------------------------------------------------------------------------------------- pixel fuser


def test_pixel_fuser_shapes_and_chunking():
    torch.manual_seed(0)
    fuser = PixelFuser(PIXEL, VALUE, SENSORY)
    masks, others = random_masks(3)
    args = (torch.randn(B, PIXEL, h, w), group(3, VALUE), group(3, SENSORY, seed=2), masks, others)
    with torch.no_grad():
        fused = fuser(*args)
        chunked = fuser(*args, chunk_size=2)
    assert fused.shape == (B, 3, VALUE, h, w)
    assert_close(chunked, fused, CHUNK_ATOL, "chunked pixel fusion")


# -------------------------------------------------------------------------------------------- mask decoder


@pytest.mark.parametrize("num_objects", [2, 3])
def test_mask_decoder_shapes_and_chunking(num_objects):
    torch.manual_seed(0)
    decoder = MaskDecoder(40, 24, embed_dim=32, sensory_dim=SENSORY, up_dims=(32, 16, 16))
    f8, f4 = torch.randn(B, 40, 2 * h, 2 * w), torch.randn(B, 24, 4 * h, 4 * w)
    readout, sensory = group(num_objects, 32), group(num_objects, SENSORY, seed=3)
    with torch.no_grad():
        new_sensory, logits = decoder(f8, f4, readout, sensory)
        chunked_sensory, chunked_logits = decoder(f8, f4, readout, sensory, chunk_size=1)
        kept_sensory, plain_logits = decoder(f8, f4, readout, sensory, update_sensory=False)
    assert logits.shape == (B, num_objects, 4 * h, 4 * w) and new_sensory.shape == sensory.shape
    assert kept_sensory is sensory and torch.equal(plain_logits, logits)
    assert_close(chunked_logits, logits, CHUNK_ATOL, "chunked logits")
    assert_close(chunked_sensory, new_sensory, CHUNK_ATOL, "chunked sensory")
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        autocast_sensory, autocast_logits = decoder(f8, f4, readout, sensory)
    assert autocast_logits.dtype == torch.float32 and autocast_sensory.dtype == torch.float32


def test_mask_decoder_rejects_mismatched_embed_dim():
    with pytest.raises(ValueError, match="embed_dim"):
        MaskDecoder(40, 24, embed_dim=64, up_dims=(32, 16, 16))


# -------------------------------------------------------------------------------------------- aux computer


def test_aux_computer():
    torch.manual_seed(0)
    aux = AuxComputer(PIXEL, SENSORY)
    pix_feat, sensory = torch.randn(B, PIXEL, h, w), group(2, SENSORY)
    query_logits = [torch.randn(B, 2, h, w) for _ in range(6)]
    out = aux(pix_feat, sensory, query_logits, selector=torch.tensor([[1.0, 0.0]]))
    assert out["sensory_logits"].shape == (B, 3, h, w) and out["query_logits"].shape == (B, 3, 6, h, w)
    assert (out["sensory_logits"][:, 2] < -15).all() and (out["query_logits"][:, 2] < -15).all()

    head = aux.sensory_head(sensory)
    direct = torch.einsum("bchw,bnchw->bnhw", pix_feat, head[:, :, :PIXEL]) + head[:, :, PIXEL]
    prob = torch.sigmoid(direct)
    background = (1 - prob).prod(dim=1, keepdim=True)
    expected = torch.logit(torch.cat([background, prob], dim=1).clamp(1e-7, 1 - 1e-7))
    assert_close(aux(pix_feat, sensory, query_logits, None)["sensory_logits"], expected, 1e-4, "sensory logits")


# --------------------------------------------------------------------------------- reference dimensions


def test_parameter_counts_at_reference_dims():
    assert num_params(KeyProjection(768, 256, 64)) == 494_209
    encoder = MaskEncoder(256, 256, 256)
    parts = {name: num_params(getattr(encoder, name)) for name in
             ("conv1", "bn1", "layer1", "layer2", "layer3", "fuser", "sensory_update")}
    assert parts == {"conv1": 15_680, "bn1": 128, "layer1": 147_968, "layer2": 525_568, "layer3": 2_099_712,
                     "fuser": 2_491_914, "sensory_update": 3_539_712}
    assert num_params(encoder) == 8_820_682
    assert num_params(MaskDecoder(768, 768)) == 4_738_945
    assert num_params(PixelFuser(256, 256, 256)) == 2_558_218
    assert num_params(ObjectSummarizer(256, 256, 8)) == 265_224
    assert num_params(AuxComputer(256, 256)) == 66_049


def test_real_dims_forward_shapes():
    torch.manual_seed(0)
    encoder = MaskEncoder(256, 256, 256).eval()
    masks, others = random_masks(2)
    pix_feat, sensory = torch.randn(B, 256, h, w), torch.zeros(B, 2, 256, h, w)
    with torch.no_grad():
        value, sensory = encoder(torch.randn(B, 3, H, W), pix_feat, sensory, masks, others)
        summaries, _ = ObjectSummarizer(256, 256, 8)(masks, value)
        fused = PixelFuser(256, 256, 256)(pix_feat, value, sensory, masks, others)
        sensory, logits = MaskDecoder(768, 768)(
            torch.randn(B, 768, 2 * h, 2 * w), torch.randn(B, 768, 4 * h, 4 * w), fused, sensory
        )
    assert value.shape == (B, 2, 256, h, w) and summaries.shape == (B, 2, 8, 257)
    assert fused.shape == (B, 2, 256, h, w) and sensory.shape == (B, 2, 256, h, w)
    assert logits.shape == (B, 2, 4 * h, 4 * w)
