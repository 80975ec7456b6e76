"""compile_network: every part compiled in place, the state dict and the outputs unchanged."""

from __future__ import annotations

import torch

from s3.model.compile import compile_network


def test_compiles_every_child_in_place_and_keeps_the_state_dict() -> None:
    torch.manual_seed(0)
    network = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    before = {k: v.clone() for k, v in network.state_dict().items()}
    x = torch.randn(3, 4)
    expected = network(x)
    assert compile_network(network, backend="eager") is network
    assert all(child._compiled_call_impl is not None for child in network.children())
    assert list(network.state_dict()) == list(before)
    assert all(torch.equal(network.state_dict()[k], v) for k, v in before.items())
    torch.testing.assert_close(network(x), expected)
