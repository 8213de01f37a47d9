"""fashion_mnist: IDX reading, the search order, errors that name the fix, and the real split."""

from __future__ import annotations

import gzip
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from arnq.data import DataConfig, DataUnavailableError, load_data
from arnq.data import fashion_mnist as fm
from arnq.data.transforms import FASHION_MNIST_MEAN, FASHION_MNIST_STD
from tests.data.conftest import labels_of


def _write_idx(path: Path, array: np.ndarray, compress: bool) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    if compress:
        with gzip.open(path.with_name(path.name + ".gz"), "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)


def _fixture(folder: Path, n_train: int = 12, n_test: int = 5, compress: bool = True) -> dict[str, np.ndarray]:
    """Random IDX files in the official names: train and test images (N, 28, 28) and labels."""
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", n_train), ("test", n_test)):
        images, labels = rng.integers(0, 256, (n, 28, 28)), np.arange(n) % 10
        images_stem, labels_stem = fm.FILES[split]
        _write_idx(folder / images_stem, images, compress)
        _write_idx(folder / labels_stem, labels, compress)
        arrays[split], arrays[split + "_labels"] = images, labels
    return arrays


@pytest.fixture(autouse=True)
def _fresh_split_cache():
    fm._cached_split.cache_clear()
    yield
    fm._cached_split.cache_clear()


@pytest.mark.parametrize("compress", [True, False])
def test_reads_idx_files_normalized(tmp_path: Path, compress: bool) -> None:
    arrays = _fixture(tmp_path, compress=compress)
    td = load_data(DataConfig("fashion_mnist", root=str(tmp_path), calib_size=4))
    assert (len(td.train), len(td.test), td.num_classes) == (12, 5, 10)
    assert td.class_names[0] == "t-shirt/top" and td.class_names[9] == "ankle boot"
    image, label = td.test[3]
    expected = (torch.from_numpy(arrays["test"][3].astype(np.float32)) / 255 - FASHION_MNIST_MEAN) / FASHION_MNIST_STD
    assert image.shape == (1, 28, 28) and torch.allclose(image[0], expected)
    assert label == 3 and labels_of(td.test) == arrays["test_labels"].tolist()


def test_search_order_env_var_then_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_folder, venv_folder = tmp_path / "env", tmp_path / "venv"
    for folder in (env_folder, venv_folder):
        folder.mkdir()
        _fixture(folder)
    monkeypatch.setattr(fm, "ENV_FOLDER", venv_folder)
    monkeypatch.setenv(fm.FASHION_MNIST_ENV_VAR, str(env_folder))
    assert fm.locate_fashion_mnist() == env_folder
    monkeypatch.delenv(fm.FASHION_MNIST_ENV_VAR)
    assert fm.locate_fashion_mnist() == venv_folder
    assert fm.locate_fashion_mnist(env_folder) == env_folder  # an explicit root wins


def test_missing_files_offline_name_the_debian_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fm, "ENV_FOLDER", tmp_path / "none1")
    monkeypatch.setattr(fm, "DEBIAN_FOLDER", tmp_path / "none2")
    monkeypatch.setenv("ARNQ_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(fm.FASHION_MNIST_ENV_VAR, raising=False)
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(DataUnavailableError, match=r"network is switched off.*dataset-fashion-mnist"):
        load_data(DataConfig("fashion_mnist"))
    with pytest.raises(DataUnavailableError, match=r"does not hold the four IDX files.*dataset-fashion-mnist"):
        load_data(DataConfig("fashion_mnist", root=str(tmp_path)))
    monkeypatch.setenv(fm.FASHION_MNIST_ENV_VAR, str(tmp_path))
    with pytest.raises(DataUnavailableError, match=r"\$ARNQ_FASHION_MNIST"):
        fm.locate_fashion_mnist()


def test_truncated_or_foreign_files_are_refused(tmp_path: Path) -> None:
    _fixture(tmp_path, compress=False)
    labels = tmp_path / fm.FILES["test"][1]
    labels.write_bytes(labels.read_bytes()[:-2])
    with pytest.raises(DataUnavailableError, match="truncated"):
        fm.read_idx(labels)
    labels.write_bytes(b"PK\x03\x04 not an idx file")
    with pytest.raises(DataUnavailableError, match="not an unsigned-byte IDX file"):
        fm.read_idx(labels)


@pytest.mark.slow  # the full dataset: slow tier (the default suite uses fixtures)
def test_real_fashion_mnist_is_the_official_split() -> None:
    """The IDX files scripts/bootstrap.sh installs: 60,000 / 10,000, balanced, normalized to ~N(0, 1)."""
    td = load_data(DataConfig("fashion_mnist", calib_size=64))
    assert (len(td.train), len(td.test)) == (60_000, 10_000)
    assert Counter(labels_of(td.test)) == {c: 1000 for c in range(10)}
    images, labels = fm.fashion_mnist_arrays("train")
    assert Counter(labels.tolist()) == {c: 6000 for c in range(10)}
    assert abs(images.mean().item()) < 0.01 and abs(images.std().item() - 1) < 0.01


def test_downloads_through_torchvision_when_the_network_is_allowed(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision.datasets

    calls = []

    class FakeFashionMNIST:  # torchvision's layout: <root>/FashionMNIST/raw/<stem>
        def __init__(self, root: str, train: bool, download: bool) -> None:
            calls.append((root, train, download))
            raw = Path(root) / "FashionMNIST" / "raw"
            raw.mkdir(parents=True, exist_ok=True)
            _fixture(raw, compress=False)

    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", FakeFashionMNIST)
    monkeypatch.setattr(fm, "ENV_FOLDER", tmp_path / "none1")
    monkeypatch.setattr(fm, "DEBIAN_FOLDER", tmp_path / "none2")
    monkeypatch.setenv("ARNQ_CACHE", str(tmp_path / "cache"))
    for var in (fm.FASHION_MNIST_ENV_VAR, *fm._OFFLINE_VARS):
        monkeypatch.delenv(var, raising=False)
    td = load_data(DataConfig("fashion_mnist", calib_size=4))
    assert len(td.train) == 12 and [c[1:] for c in calls] == [(True, True), (False, True)]
    assert Path(calls[0][0]) == tmp_path / "cache" / "data" / "fashion-mnist"
