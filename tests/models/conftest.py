"""Fixtures of the model tests."""

from __future__ import annotations

import os
import random

import numpy as np
import pytest
import torch


@pytest.fixture
def empty_hf_cache(monkeypatch, tmp_path):
    """Offline hub with an empty HF cache, whatever the machine has cached."""
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    return tmp_path / "hf-cache"


def global_state() -> dict:
    """Process-global state a library call must leave alone."""
    return {
        "torch_rng": torch.get_rng_state(),
        "python_rng": random.getstate(),
        "numpy_rng": np.random.get_state(),
        "deterministic": torch.are_deterministic_algorithms_enabled(),
        "environ": dict(os.environ),
    }


def assert_same_global_state(before: dict, after: dict) -> None:
    """Fail on the first piece of global state that differs between two `global_state()` snapshots."""
    assert torch.equal(before["torch_rng"], after["torch_rng"])
    assert before["python_rng"] == after["python_rng"]
    kind, keys, *rest = before["numpy_rng"]
    kind_after, keys_after, *rest_after = after["numpy_rng"]
    assert kind == kind_after and np.array_equal(keys, keys_after) and rest == rest_after
    assert before["deterministic"] == after["deterministic"]
    assert before["environ"] == after["environ"]
