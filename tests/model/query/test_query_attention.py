"""multi_head_attention: the query transformer's attentions equal nn.MultiheadAttention's."""

from __future__ import annotations

import pytest
import torch
from conftest import assert_close

from s3.model.query.attention import multi_head_attention


@pytest.mark.parametrize("masked", [False, True])
def test_equals_multihead_attention(masked: bool) -> None:
    torch.manual_seed(0)
    batch, heads, dim, num_queries, num_keys = 2, 4, 32, 5, 9
    attn = torch.nn.MultiheadAttention(dim, heads, batch_first=True).double()
    with torch.no_grad():
        for parameter in attn.parameters():
            parameter.normal_()
    query = torch.randn(batch, num_queries, dim).double()
    key, value = torch.randn(batch, num_keys, dim).double(), torch.randn(batch, num_keys, dim).double()
    blocked = torch.rand(batch * heads, num_queries, num_keys) < 0.5 if masked else None
    if blocked is not None:
        blocked[:, :, 0] = False  # no fully blocked row
    with torch.no_grad():
        expected, expected_weights = attn(
            query, key, value, attn_mask=blocked, need_weights=True, average_attn_weights=False
        )
        plain, no_weights = multi_head_attention(attn, query, key, value, blocked)
        with_weights, weights = multi_head_attention(attn, query, key, value, blocked, need_weights=True)
    assert no_weights is None and weights is not None
    assert_close(plain, expected, 1e-9, "attention output (fused kernel)")
    assert_close(with_weights, expected, 1e-9, "attention output (explicit weights)")
    assert_close(weights, expected_weights, 1e-12, "per-head attention weights")
