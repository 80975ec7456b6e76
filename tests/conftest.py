"""Shared test fixtures.

The reference test vectors (recorded from the authors' implementation with random weights) live
outside the repository, in ``../shared/reference`` beside the checkout, or wherever the
``S3_REFERENCE_DIR`` environment variable points. Tests that need them use the ``reference``
fixture, which fails loudly (it never skips) when the files are missing.
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]


def reference_dir() -> Path:
    env = os.environ.get("S3_REFERENCE_DIR")
    return Path(env) if env else REPO_ROOT.parent / "shared" / "reference"


class ReferenceVectors:
    """One recorded reference file: its tensors (``.pt``) and its JSON sidecar."""

    def __init__(self, name: str) -> None:
        root = reference_dir()
        pt, js = root / f"{name}.pt", root / f"{name}.json"
        if not pt.is_file() or not js.is_file():
            pytest.fail(
                f"reference vectors '{name}' not found under {root}; "
                "set S3_REFERENCE_DIR to the folder that holds them"
            )
        self.name = name
        self.tensors: dict[str, Any] = torch.load(pt, weights_only=True)
        self.meta: dict[str, Any] = json.loads(js.read_text())

    def __getitem__(self, key: str) -> Any:
        return self.tensors[key]

    def weights(self, prefix: str) -> dict[str, torch.Tensor]:
        """All tensors whose key starts with ``prefix.``, with the prefix removed."""
        p = prefix + "."
        return {k[len(p):]: v for k, v in self.tensors.items() if k.startswith(p)}


@pytest.fixture
def reference():
    """Factory: ``reference("msda")`` loads ``msda.pt`` + ``msda.json``."""
    return ReferenceVectors


def assert_close(actual: torch.Tensor, expected: torch.Tensor, atol: float, what: str) -> None:
    """Max-abs-difference check with a readable failure message."""
    assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    diff = (actual.double() - expected.double()).abs().max().item()
    assert diff <= atol, f"{what}: max abs diff {diff:.3g} > {atol:.1g}"


@contextmanager
def single_thread() -> Iterator[None]:
    """One intra-op thread: tiny tensors on shared cores run far faster single-threaded."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@pytest.fixture
def one_thread() -> Iterator[None]:
    with single_thread():
        yield


@pytest.fixture(scope="module")
def network():
    """The random-weight ``s3_tiny`` network in eval mode, run with one intra-op thread."""
    from s3.config import load_model_config
    from s3.model.build import build_network

    with single_thread():
        torch.manual_seed(0)
        yield build_network(load_model_config("s3_tiny")).eval()
