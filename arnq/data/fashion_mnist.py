"""fashion_mnist: the full Fashion-MNIST (60,000 train / 10,000 test) from local IDX files.

Where the files are looked for, first match wins: ``DataConfig.root``; ``$ARNQ_FASHION_MNIST``;
the Python environment (``<sys.prefix>/share/datasets/fashion-mnist``, where
``scripts/bootstrap.sh`` unpacks Debian's ``dataset-fashion-mnist`` package); the system-wide
Debian install (``/usr/share/datasets/fashion-mnist``); the arnq data cache
(``<cache root>/data/fashion-mnist``). When none holds the files and the network is not
switched off, torchvision downloads them into the data cache.
"""

from __future__ import annotations

import functools
import gzip
import os
import sys
from pathlib import Path

import numpy as np
import torch

from arnq.cache import cache_root
from arnq.data.base import (
    DataConfig,
    DatasetInfo,
    DataUnavailableError,
    TaskData,
    TensorClassificationDataset,
    Transform,
    make_task_data,
    register_dataset,
)
from arnq.data.transforms import FASHION_MNIST_MEAN, FASHION_MNIST_STD

FASHION_MNIST_ENV_VAR = "ARNQ_FASHION_MNIST"
DEBIAN_PACKAGE = "dataset-fashion-mnist"
DEBIAN_FOLDER = Path("/usr/share/datasets/fashion-mnist")
#: where scripts/bootstrap.sh unpacks the Debian package: inside the environment, like the text corpora
ENV_FOLDER = Path(sys.prefix) / "share" / "datasets" / "fashion-mnist"
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
SPLIT_SIZES = {"train": 60_000, "test": 10_000}
CLASS_NAMES = (
    "t-shirt/top",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle boot",
)
_OFFLINE_VARS = ("ARNQ_OFFLINE", "HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE")
_TRUE = {"1", "true", "yes", "on"}


def data_cache_folder() -> Path:
    """Where torchvision downloads Fashion-MNIST: <cache root>/data/fashion-mnist."""
    return cache_root() / "data" / "fashion-mnist"


def _install_hint() -> str:
    return (
        f"install Debian's '{DEBIAN_PACKAGE}' package (`./scripts/bootstrap.sh` unpacks it into "
        f"{ENV_FOLDER}; or `apt-get install {DEBIAN_PACKAGE}`), or point DataConfig(root=...) or "
        f"${FASHION_MNIST_ENV_VAR} at a folder holding the four IDX files "
        f"({', '.join(f + '.gz' for pair in FILES.values() for f in pair)}), or allow network access "
        "(unset ARNQ_OFFLINE / HF_DATASETS_OFFLINE) so that torchvision downloads them"
    )


def _idx_file(folder: Path, stem: str) -> Path | None:
    """`stem`, `stem.gz` or torchvision's raw/`stem` layout inside `folder`, if present."""
    for candidate in (
        folder / f"{stem}.gz",
        folder / stem,
        folder / "FashionMNIST" / "raw" / stem,
        folder / "FashionMNIST" / "raw" / f"{stem}.gz",
    ):
        if candidate.is_file():
            return candidate
    return None


def _holds_files(folder: Path) -> bool:
    return all(_idx_file(folder, stem) is not None for pair in FILES.values() for stem in pair)


def _offline() -> bool:
    return any(os.environ.get(k, "").strip().lower() in _TRUE for k in _OFFLINE_VARS)


def _download(folder: Path) -> Path:
    """Fetch the IDX files with torchvision into `folder`; errors say what to install instead."""
    if _offline():
        raise DataUnavailableError(
            "fashion_mnist: no local copy of the IDX files and the network is switched off "
            f"({'/'.join(_OFFLINE_VARS)}); {_install_hint()}"
        )
    try:
        from torchvision.datasets import FashionMNIST

        FashionMNIST(str(folder), train=True, download=True)
        FashionMNIST(str(folder), train=False, download=True)
    except Exception as exc:  # torchvision raises URLError, RuntimeError, OSError ...
        raise DataUnavailableError(
            f"fashion_mnist: no local copy and the torchvision download failed ({type(exc).__name__}: {exc}); "
            f"{_install_hint()}"
        ) from exc
    return folder


def locate_fashion_mnist(root: str | os.PathLike | None = None) -> Path:
    """The folder holding the Fashion-MNIST IDX files (see the module docstring for the search order)."""
    if root is not None:
        folder = Path(root).expanduser()
        if not _holds_files(folder):
            raise DataUnavailableError(
                f"fashion_mnist: root={str(root)!r} does not hold the four IDX files; {_install_hint()}"
            )
        return folder
    env = os.environ.get(FASHION_MNIST_ENV_VAR)
    if env:
        if not _holds_files(Path(env).expanduser()):
            raise DataUnavailableError(
                f"fashion_mnist: ${FASHION_MNIST_ENV_VAR}={env!r} does not hold the four IDX files; "
                f"{_install_hint()}"
            )
        return Path(env).expanduser()
    for folder in (ENV_FOLDER, DEBIAN_FOLDER, data_cache_folder()):
        if _holds_files(folder):
            return folder
    return _download(data_cache_folder())


def read_idx(path: Path) -> np.ndarray:
    """The array stored in an IDX file (gzip-compressed or not): uint8 images (N, H, W) or labels (N,)."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise DataUnavailableError(f"{path} is not an unsigned-byte IDX file; {_install_hint()}")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise DataUnavailableError(f"{path} holds {body.size} values, its header says {dims}: truncated file")
    return body.reshape(dims)


@functools.lru_cache(maxsize=2)
def _cached_split(folder: str, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    images_stem, labels_stem = FILES[split]
    images = read_idx(_idx_file(Path(folder), images_stem))  # type: ignore[arg-type]
    labels = read_idx(_idx_file(Path(folder), labels_stem))  # type: ignore[arg-type]
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise DataUnavailableError(
            f"fashion_mnist {split}: images {images.shape} and labels {labels.shape} do not match"
        )
    x = torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)
    x = (x - FASHION_MNIST_MEAN) / FASHION_MNIST_STD
    return x, torch.from_numpy(labels.astype(np.int64))


def fashion_mnist_arrays(
    split: str, root: str | os.PathLike | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Copies of the normalized (N, 1, 28, 28) images and labels of `split` ('train' or 'test')."""
    if split not in FILES:
        raise ValueError(f"fashion_mnist split={split!r} is invalid; use 'train' or 'test'")
    images, labels = _cached_split(str(locate_fashion_mnist(root)), split)
    return images.clone(), labels.clone()


@register_dataset(
    DatasetInfo(
        "fashion_mnist",
        "fashion_mnist",
        "image",
        10,
        f"Fashion-MNIST, 60,000 train / 10,000 test (Debian package {DEBIAN_PACKAGE})",
        True,
    )
)
def build_fashion_mnist(cfg: DataConfig, transform: Transform | None = None) -> TaskData:
    """fashion_mnist: the official 60,000 / 10,000 split, normalized (1, 28, 28) tensors."""
    folder = str(locate_fashion_mnist(cfg.root))
    parts = {}
    for split in FILES:
        images, labels = _cached_split(folder, split)
        parts[split] = TensorClassificationDataset(images, labels, transform)  # read only: never mutated
    return make_task_data(
        cfg,
        task="fashion_mnist",
        modality="image",
        num_classes=10,
        full_train=parts["train"],
        test=parts["test"],
        class_names=CLASS_NAMES,
    )
