"""Query-transformer block, prologue and whole transformer against the reference vectors and counts."""

from __future__ import annotations

import pytest
import torch
from conftest import assert_close

from s3.model.query import (
    AuxMaskHead,
    MaskedCrossAttentionRead,
    QueryTransformer,
    QueryTransformerBlock,
    foreground_attention_mask,
)

# query_block.pt key -> our QueryTransformerBlock state-dict name. The official names (under
# object_transformer.blocks.<i>.) are in the comments.
QUERY_BLOCK_NAME_MAP = {
    # read_from_pixel.{norm, alpha, proj, final}
    "dq.norm.weight": "read_from_pixel.norm.weight",
    "dq.norm.bias": "read_from_pixel.norm.bias",
    "dq.alpha": "read_from_pixel.alpha",
    "dq.mix_proj.weight": "read_from_pixel.mix_proj.weight",
    "dq.mix_proj.bias": "read_from_pixel.mix_proj.bias",
    "dq.out_proj.weight": "read_from_pixel.out_proj.weight",
    "dq.out_proj.bias": "read_from_pixel.out_proj.bias",
    # self_attn.norm, self_attn.self_attn.{in_proj_*, out_proj}
    "query_self_attn.norm.weight": "self_attn.norm.weight",
    "query_self_attn.norm.bias": "self_attn.norm.bias",
    "query_self_attn.in_proj_weight": "self_attn.attn.in_proj_weight",
    "query_self_attn.in_proj_bias": "self_attn.attn.in_proj_bias",
    "query_self_attn.out_proj.weight": "self_attn.attn.out_proj.weight",
    "query_self_attn.out_proj.bias": "self_attn.attn.out_proj.bias",
    # ffn.{norm, linear1, linear2}
    "query_ffn.norm.weight": "ffn.norm.weight",
    "query_ffn.norm.bias": "ffn.norm.bias",
    "query_ffn.fc1.weight": "ffn.fc1.weight",
    "query_ffn.fc1.bias": "ffn.fc1.bias",
    "query_ffn.fc2.weight": "ffn.fc2.weight",
    "query_ffn.fc2.bias": "ffn.fc2.bias",
    # read_from_query.cross_attn.{in_proj_*, out_proj}
    "pixel_cross_attn.in_proj_weight": "read_from_query.attn.in_proj_weight",
    "pixel_cross_attn.in_proj_bias": "read_from_query.attn.in_proj_bias",
    "pixel_cross_attn.out_proj.weight": "read_from_query.attn.out_proj.weight",
    "pixel_cross_attn.out_proj.bias": "read_from_query.attn.out_proj.bias",
    # pixel_ffn.conv.{conv1, conv2, conv}
    "pixel_ffn.conv1.weight": "pixel_ffn.conv1.weight",
    "pixel_ffn.conv1.bias": "pixel_ffn.conv1.bias",
    "pixel_ffn.conv2.weight": "pixel_ffn.conv2.weight",
    "pixel_ffn.conv2.bias": "pixel_ffn.conv2.bias",
    "pixel_ffn.channel_gate_conv.weight": "pixel_ffn.channel_gate.weight",
}

# query_block.pt key -> our AuxMaskHead state-dict name (official: object_transformer.mask_pred.<i+1>.1.*,
# ours: aux_heads.<i+1>.proj.*).
QUERY_BLOCK_AUX_NAME_MAP = {"aux_head.weight": "proj.weight", "aux_head.bias": "proj.bias"}

# object_transformer_prologue.pt key -> our QueryTransformer state-dict name (official name in the
# comment, under object_transformer.).
PROLOGUE_NAME_MAP = {
    "query_init_table": "query_init.weight",  # query_init.weight
    "query_pe_table": "query_emb.weight",  # query_emb.weight
    "summary_to_query_init.weight": "summary_to_query_init.weight",  # summary_to_query_init.weight
    "summary_to_query_init.bias": "summary_to_query_init.bias",  # summary_to_query_init.bias
    "summary_to_query_pe.weight": "summary_to_query_emb.weight",  # summary_to_query_emb.weight
    "summary_to_query_pe.bias": "summary_to_query_emb.bias",  # summary_to_query_emb.bias
    "pixel_init_proj.weight": "pixel_init_proj.weight",  # pixel_init_proj.weight
    "pixel_init_proj.bias": "pixel_init_proj.bias",  # pixel_init_proj.bias
    "pixel_pe_proj.weight": "pixel_emb_proj.weight",  # pixel_emb_proj.weight
    "pixel_pe_proj.bias": "pixel_emb_proj.bias",  # pixel_emb_proj.bias
    "aux_head0.weight": "aux_heads.0.proj.weight",  # mask_pred.0.1.weight
    "aux_head0.bias": "aux_heads.0.proj.bias",  # mask_pred.0.1.bias
    "spatial_pe_inv_freq": "spatial_pe.inv_freq",  # spatial_pe.inv_freq
}


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def small_transformer(**overrides) -> QueryTransformer:
    config = dict(dim=32, value_dim=24, num_queries=8, num_blocks=2, num_heads=4, ffn_dim=48)
    config.update(overrides)
    return QueryTransformer(**config)


def small_inputs(model: QueryTransformer, batch: int, num_objects: int, time: int = 2):
    """Random pixel features (batch, num_objects, dim, 3, 5) and object memory with ``time`` steps."""
    g = torch.Generator().manual_seed(batch * 10 + num_objects)
    dim = model.query_init.embedding_dim
    pixel = torch.randn(batch, num_objects, dim, 3, 5, generator=g)
    memory = torch.rand(batch, num_objects, time, model.num_queries, model.value_dim + 1, generator=g)
    return pixel, memory


def test_block_reproduces_reference(reference) -> None:
    ref = reference("query_block")
    block = QueryTransformerBlock(256, 8, 2048)
    aux_head = AuxMaskHead(256)
    block.load_state_dict({ours: ref[theirs] for theirs, ours in QUERY_BLOCK_NAME_MAP.items()})
    aux_head.load_state_dict({ours: ref[theirs] for theirs, ours in QUERY_BLOCK_AUX_NAME_MAP.items()})

    seen: dict[str, object] = {}
    hooks = [
        block.read_from_pixel.register_forward_hook(lambda m, i, o: seen.__setitem__("dq", o)),
        block.self_attn.register_forward_hook(lambda m, i, o: seen.__setitem__("self_attn", o)),
        block.read_from_query.register_forward_hook(lambda m, i, o: seen.__setitem__("cross", (i, o))),
    ]
    with torch.no_grad():
        queries, pixel, read_weights = block(
            ref["queries"], ref["pixel"], ref["query_pe"], ref["pixel_pe"], ref["attn_mask"]
        )
        aux_logits = aux_head(pixel)
        (pixel_tokens, block_queries, pixel_pe, query_pe), cross_out = seen["cross"]
        _, cross_probs = block.read_from_query.attn(
            pixel_tokens + pixel_pe, block_queries + query_pe, block_queries, average_attn_weights=False
        )
    for h in hooks:
        h.remove()

    queries_after_dq, similarity = seen["dq"]
    expected_similarity = ref["intermediate.dq_similarity"]
    assert torch.equal(torch.isneginf(similarity), torch.isneginf(expected_similarity))
    finite = torch.isfinite(expected_similarity)
    assert_close(similarity[finite], expected_similarity[finite], 1e-4, "DQ similarity")
    assert read_weights is similarity
    assert_close(queries_after_dq, ref["intermediate.queries_after_dq"], 1e-4, "queries after DQ")
    assert_close(seen["self_attn"], ref["intermediate.queries_after_self_attn"], 1e-4, "queries after self-attn")
    assert_close(cross_out, ref["intermediate.pixel_tokens_after_cross_attn"], 1e-4, "pixels after cross-attn")
    assert_close(cross_probs, ref["intermediate.pixel_cross_attn_probs"], 1e-4, "cross-attn probabilities")
    assert_close(queries, ref["out.queries"], 1e-4, "queries")
    assert_close(pixel, ref["out.pixel"], 1e-4, "pixel")
    assert_close(aux_logits, ref["out.aux_logits"], 1e-4, "aux logits")
    assert torch.equal(foreground_attention_mask(aux_logits, None, 8, 8), ref["out.attn_mask"])


def test_prologue_reproduces_reference(reference) -> None:
    ref = reference("object_transformer_prologue")
    model = QueryTransformer(num_blocks=1)
    state = {ours: ref[theirs] for theirs, ours in PROLOGUE_NAME_MAP.items()}
    result = model.load_state_dict(state, strict=False)
    assert not result.unexpected_keys
    assert all(k.startswith(("blocks.0.", "aux_heads.1.")) for k in result.missing_keys)

    with torch.no_grad():
        start = model.prepare(ref["pixel_in"], ref["object_summaries"])
        spatial_pe = model.spatial_pe(4, 6)
    assert_close(spatial_pe, ref["intermediate.spatial_pe"][0], 1e-5, "spatial PE")
    assert_close(start.queries, ref["out.queries"], 1e-5, "queries")
    assert_close(start.query_pe, ref["out.query_pe"], 1e-5, "query PE")
    assert_close(start.pixel, ref["out.pixel"], 1e-5, "pixel")
    assert_close(start.pixel_pe, ref["out.pixel_pe"], 1e-5, "pixel PE")
    assert_close(start.aux_logits, ref["out.aux_logits0"], 1e-5, "aux logits 0")
    assert torch.equal(start.attn_mask, ref["out.attn_mask0"])


def test_forward_composes_prologue_blocks_and_aux_heads() -> None:
    model = small_transformer(num_blocks=3).eval()
    pixel, memory = small_inputs(model, batch=2, num_objects=2)
    selector = torch.tensor([[1.0, 1.0], [1.0, 0.0]]).view(2, 2, 1, 1)
    with torch.no_grad():
        out, aux = model(pixel, memory, selector, need_aux=True)
        out_without_aux, no_aux = model(pixel, memory, selector)

        start = model.prepare(pixel, memory, selector)
        queries, state, mask, logits = start.queries, start.pixel, start.attn_mask, [start.aux_logits]
        for block, head in zip(model.blocks, model.aux_heads[1:]):
            queries, state, _ = block(queries, state, start.query_pe, start.pixel_pe, mask)
            logits.append(head(state))
            mask = foreground_attention_mask(logits[-1], selector, model.num_heads, model.num_queries)

    assert no_aux == {}
    assert torch.equal(out, state) and torch.equal(out_without_aux, state)
    assert len(aux["logits"]) == 4
    for ours, expected in zip(aux["logits"], logits):
        assert torch.equal(ours, expected)
    assert torch.equal(aux["attn_mask"], mask.view(2, 2, model.num_heads, 8, 3, 5)[:, :, 0])


@pytest.mark.parametrize("read", ["discriminative", "cutie"])
@pytest.mark.parametrize("num_queries", [8, 16])
@pytest.mark.parametrize("num_objects", [1, 3])
def test_output_shapes(read: str, num_queries: int, num_objects: int) -> None:
    model = small_transformer(num_queries=num_queries, read=read)
    pixel, memory = small_inputs(model, batch=2, num_objects=num_objects)
    selector = torch.ones(2, num_objects, 1, 1)
    with torch.no_grad():
        out, aux = model(pixel, memory, selector, need_aux=True)
    assert out.shape == pixel.shape
    assert len(aux["logits"]) == 3
    assert all(logits.shape == (2, num_objects, 3, 5) for logits in aux["logits"])
    assert aux["attn_mask"].shape == (2, num_objects, num_queries, 3, 5)
    assert aux["attn_mask"].dtype == torch.bool
    assert torch.isfinite(out).all()


def test_object_memory_must_hold_num_queries_summaries() -> None:
    model = small_transformer(num_queries=8)
    pixel, memory = small_inputs(model, batch=1, num_objects=2)
    with pytest.raises(ValueError, match="num_queries"):
        model(pixel, memory[..., :4, :])


def test_unknown_read_is_rejected() -> None:
    with pytest.raises(ValueError, match="'cutie', 'discriminative'"):
        QueryTransformerBlock(32, 4, 64, read="dq")


def test_parameter_counts() -> None:
    model = QueryTransformer(dim=256, num_queries=8, num_blocks=5, ffn_dim=2048)
    block = model.blocks[0]
    assert count(model) == 14_722_591
    assert count(block) == 2_890_757
    assert count(model) - 5 * count(block) == 268_806
    assert count(block.read_from_pixel) == 132_352
    assert count(block.self_attn) == 263_680
    assert count(block.ffn) == 1_051_392
    assert count(block.read_from_query) == 263_168
    assert count(block.pixel_ffn) == 1_180_165

    cutie = QueryTransformer(dim=256, num_queries=8, num_blocks=5, ffn_dim=2048, read="cutie")
    assert isinstance(cutie.blocks[0].read_from_pixel, MaskedCrossAttentionRead)
    assert count(cutie.blocks[0].read_from_pixel) == 263_680
    assert count(cutie) - count(model) == 5 * (263_680 - 132_352)


@pytest.mark.parametrize(
    ("read", "dq_norm_axis"), [("discriminative", "queries"), ("discriminative", "channels"), ("cutie", "queries")]
)
def test_every_parameter_gets_a_gradient(read: str, dq_norm_axis: str) -> None:
    torch.manual_seed(0)
    model = small_transformer(read=read, dq_norm_axis=dq_norm_axis)
    pixel, memory = small_inputs(model, batch=1, num_objects=2)
    out, aux = model(pixel, memory, need_aux=True)
    loss = (out * torch.randn_like(out)).sum()
    loss = loss + sum((logits * torch.randn_like(logits)).sum() for logits in aux["logits"])
    loss.backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.any()]
    assert not missing, f"no gradient: {missing}"


def test_cutie_read_respects_the_mask() -> None:
    torch.manual_seed(0)
    read = MaskedCrossAttentionRead(32, 4)
    logits = torch.randn(1, 2, 3, 4) * 3
    mask = foreground_attention_mask(logits, None, num_heads=4, num_queries=8)
    queries, query_pe = torch.randn(2, 8, 32), torch.randn(2, 8, 32)
    pixels, pixel_pe = torch.randn(2, 12, 32), torch.randn(2, 12, 32)
    out, weights = read(queries, pixels, query_pe, pixel_pe, mask)
    assert out.shape == (2, 8, 32)
    assert weights.shape == (2, 4, 12, 8)
    blocked = mask.view(2, 4, 8, 12).transpose(2, 3)
    assert (weights[blocked] == 0).all()
    assert_close(weights.sum(dim=2), torch.ones(2, 4, 8), 1e-6, "attention sums over pixels")
