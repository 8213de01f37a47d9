"""Fixtures and helpers of the dataset tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch


def labels_of(ds: torch.utils.data.Dataset) -> list[int]:
    """Every label of `ds`, in order."""
    return [ds[i][1] for i in range(len(ds))]


@pytest.fixture
def hf_offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Hub offline, datasets cache in tmp_path: nothing touches the network or the user's cache."""
    import datasets
    from huggingface_hub import constants

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    cache = tmp_path / "hf_cache"
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", cache)
    return cache
