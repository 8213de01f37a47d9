"""Fixtures of the model tests."""

from __future__ import annotations

import pytest


@pytest.fixture
def empty_hf_cache(monkeypatch, tmp_path):
    """Offline hub with an empty HF cache, whatever the machine has cached."""
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    return tmp_path / "hf-cache"
