"""mnist5k: the fixed split, seeded draws, transforms and size limits, and the cache it reads from."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from arnq.data import DataConfig, TaskData, load_data, mnist5k_arrays
from tests.data.conftest import labels_of


def _stack(ds: torch.utils.data.Dataset) -> torch.Tensor:
    return torch.stack([ds[i][0] for i in range(len(ds))])


def test_mnist5k_splits() -> None:
    td = load_data(DataConfig("mnist5k"))
    assert isinstance(td, TaskData)
    assert (td.name, td.task, td.modality, td.num_classes, td.metric) == (
        "mnist5k",
        "mnist",
        "image",
        10,
        "accuracy",
    )
    assert td.class_names == tuple("0123456789")
    assert (len(td.train), len(td.test), len(td.calib)) == (4000, 1000, 256)
    x, y = td.test[0]
    assert x.shape == (1, 28, 28) and x.dtype == torch.float32 and isinstance(y, int)
    assert np.bincount(labels_of(td.test), minlength=10).tolist() == [100] * 10
    assert np.bincount(labels_of(td.train), minlength=10).tolist() == [400] * 10
    # the fixed split is pinned, so it is the same in every process and on every machine
    _, _, train_idx, test_idx = mnist5k_arrays()
    assert test_idx[:8] == (1, 2, 7, 19, 21, 23, 25, 29) and sum(test_idx) == 2_500_593
    assert len(set(train_idx) | set(test_idx)) == 5000
    test_x = _stack(td.test)
    lo, hi = -0.1307 / 0.3081, (1 - 0.1307) / 0.3081
    assert test_x.min().item() == pytest.approx(lo, abs=1e-5)
    assert test_x.max().item() == pytest.approx(hi, abs=1e-5)
    assert abs(test_x.mean().item()) < 0.2  # roughly standardized (real digits)
    # train and test hold different digits
    train_x = _stack(td.train)
    train_rows = {tuple(r.tolist()) for r in train_x.flatten(1)[:, ::7]}
    assert (
        sum(tuple(r.tolist()) in train_rows for r in test_x.flatten(1)[:, ::7]) < 5
    )  # MNIST has few duplicates


def test_mnist5k_seeds() -> None:
    a = load_data(DataConfig("mnist5k", seed=0, calib_size=64, train_subset=500))
    a2 = load_data(DataConfig("mnist5k", seed=0, calib_size=64, train_subset=500))
    b = load_data(DataConfig("mnist5k", seed=1, calib_size=64, train_subset=500))
    full = load_data(DataConfig("mnist5k", seed=7, calib_size=64))
    # test split identical for every seed
    assert torch.equal(_stack(a.test), _stack(b.test)) and labels_of(a.test) == labels_of(b.test)
    # calib: deterministic per seed, different across seeds
    assert torch.equal(_stack(a.calib), _stack(a2.calib))
    assert not torch.equal(_stack(a.calib), _stack(b.calib))
    # train_subset sizes, deterministic, seed-dependent
    assert (len(a.train), len(b.train), len(full.train)) == (500, 500, 4000)
    assert torch.equal(_stack(a.train), _stack(a2.train))
    assert not torch.equal(_stack(a.train), _stack(b.train))
    # calib comes from the FULL train split (checked by content), never from test
    full_rows = {r.numpy().tobytes() for r in _stack(full.train).flatten(1)}
    test_rows = {r.numpy().tobytes() for r in _stack(full.test).flatten(1)}
    for td in (a, b):
        calib_rows = [r.numpy().tobytes() for r in _stack(td.calib).flatten(1)]
        assert len(set(calib_rows)) == 64
        assert all(r in full_rows for r in calib_rows)
        assert not any(r in test_rows for r in calib_rows)
        assert all(r.numpy().tobytes() in full_rows for r in _stack(td.train).flatten(1))
        # drawn from the full 4000, not from the 500-example subset (expected overlap ~ 64 * 500 / 4000 = 8)
        subset_rows = {r.numpy().tobytes() for r in _stack(td.train).flatten(1)}
        assert sum(r in subset_rows for r in calib_rows) < 32


def test_mnist5k_transform_and_size_limits() -> None:
    td = load_data(DataConfig("mnist5k", calib_size=8), transform=lambda t: t.repeat(3, 1, 1) * 2)
    base = load_data(DataConfig("mnist5k", calib_size=8))
    x, _ = td.test[3]
    assert x.shape == (3, 28, 28)
    assert torch.equal(x[2], base.test[3][0][0] * 2)
    assert td.calib[0][0].shape == (3, 28, 28)
    with pytest.raises(ValueError, match=r"calib_size=4001 exceeds the 4000 examples"):
        load_data(DataConfig("mnist5k", calib_size=4001))
    with pytest.raises(ValueError, match=r"train_subset=5000 exceeds the 4000 examples"):
        load_data(DataConfig("mnist5k", train_subset=5000))


def test_mnist5k_arrays_are_copies() -> None:
    images, labels, _, _ = mnist5k_arrays()
    reference = images[0].clone()
    images.zero_()
    labels.fill_(-1)
    again, again_labels, _, _ = mnist5k_arrays()
    assert torch.equal(again[0], reference) and again_labels.min().item() == 0
    assert load_data(DataConfig("mnist5k", calib_size=8)).train[0][0].abs().sum() > 0
