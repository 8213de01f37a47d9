"""Dataset registry core: configs, TaskData, the registry, in-memory datasets and seeded subsets."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Subset

from arnq import hub
from arnq.registry import Registry, UnknownNameError

Transform = Callable[[Any], Any]
TextInput = str | tuple[str, str]


class DataUnavailableError(FileNotFoundError):
    """A dataset's files or source cannot be found or reached; the message says how to provide them."""

    def __str__(self) -> str:  # FileNotFoundError would format multi-arg tuples
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class DataConfig:
    """Which dataset to load and how to draw its seeded train subset and calibration set."""

    name: str
    seed: int = 0
    calib_size: int = 256
    train_subset: int | None = None
    root: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str):
            raise ValueError(f"DataConfig.name={self.name!r} must be a str; use one of {DATASETS.names()}")
        if self.name not in DATASETS:
            raise UnknownNameError(f"DataConfig.name: {DATASETS.unknown_message(self.name)}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)):
            raise ValueError(f"DataConfig.seed={self.seed!r} must be an int; pass e.g. seed=0")
        if isinstance(self.calib_size, bool) or not isinstance(self.calib_size, (int, np.integer)):
            raise ValueError(
                f"DataConfig.calib_size={self.calib_size!r} must be an int; pass e.g. calib_size=256"
            )
        if self.calib_size < 1:
            raise ValueError(
                f"DataConfig.calib_size={self.calib_size} must be >= 1; pass e.g. calib_size=256"
            )
        if self.train_subset is not None:
            if isinstance(self.train_subset, bool) or not isinstance(self.train_subset, (int, np.integer)):
                raise ValueError(
                    f"DataConfig.train_subset={self.train_subset!r} must be an int or None; "
                    "pass None to train on the whole train split"
                )
            if self.train_subset < 1:
                raise ValueError(
                    f"DataConfig.train_subset={self.train_subset} must be >= 1; "
                    "pass None to train on the whole train split"
                )
        if self.root is not None:
            if isinstance(self.root, os.PathLike):
                object.__setattr__(self, "root", os.fspath(self.root))
            if not isinstance(self.root, str) or not self.root:
                raise ValueError(
                    f"DataConfig.root={self.root!r} must be a non-empty path string or None; "
                    "pass e.g. root='/data/imagenet'"
                )


@dataclass
class TaskData:
    """The splits of one dataset plus what a model head and an evaluator need to know."""

    name: str
    task: str
    modality: str
    num_classes: int
    train: Dataset
    calib: Dataset
    test: Dataset
    metric: str = "accuracy"
    class_names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.modality not in ("image", "text"):
            raise ValueError(f"TaskData.modality={self.modality!r} must be 'image' or 'text'")
        if self.num_classes < 2:
            raise ValueError(f"TaskData.num_classes={self.num_classes} must be >= 2 for classification")
        if self.class_names and len(self.class_names) != self.num_classes:
            raise ValueError(
                f"TaskData.class_names has {len(self.class_names)} names but num_classes={self.num_classes}; "
                "give one name per class or none"
            )


DatasetBuilder = Callable[[DataConfig, Transform | None], TaskData]
DATASETS: Registry[DatasetBuilder] = Registry("dataset")


@dataclass(frozen=True)
class DatasetInfo:
    """Static facts about a registered dataset, for listings (no data is loaded)."""

    name: str
    task: str
    modality: str
    num_classes: int | None
    source: str
    embedded: bool


_INFO: dict[str, DatasetInfo] = {}


def register_dataset(info: DatasetInfo) -> Callable[[DatasetBuilder], DatasetBuilder]:
    """Register a builder in DATASETS together with its listing info."""

    def add(builder: DatasetBuilder) -> DatasetBuilder:
        DATASETS.register(info.name, builder)
        _INFO[info.name] = info
        return builder

    return add


def load_data(cfg: DataConfig, transform: Transform | None = None) -> TaskData:
    """Build the TaskData of `cfg.name`; `transform` applies to images and is ignored for text."""
    return DATASETS.get(cfg.name)(cfg, transform)


def describe_datasets() -> list[dict[str, Any]]:
    """One dict per registered dataset (name, task, modality, num_classes, source, embedded)."""
    rows = []
    for name, builder in DATASETS.items():
        info = _INFO.get(name)
        if info is None:
            doc = (builder.__doc__ or "").strip().splitlines()
            info = DatasetInfo(name, name, "unknown", None, doc[0] if doc else "", False)
        rows.append(
            {
                "name": info.name,
                "task": info.task,
                "modality": info.modality,
                "num_classes": info.num_classes,
                "source": info.source,
                "embedded": info.embedded,
            }
        )
    return rows


# ---------------------------------------------------------------------------------------------
# Datasets and seeded subsets


class TensorClassificationDataset(Dataset):
    """In-memory (image tensor, int label) pairs with an optional per-item transform."""

    def __init__(
        self, images: torch.Tensor, labels: torch.Tensor, transform: Transform | None = None
    ) -> None:
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels; they must match")
        self.images = images
        self.labels = labels
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        image = self.images[index]
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.labels[index])

    def subset(self, indices: Sequence[int]) -> TensorClassificationDataset:
        """A new dataset holding copies of the rows at `indices` (same transform)."""
        idx = torch.as_tensor(list(indices), dtype=torch.long)
        return TensorClassificationDataset(self.images[idx], self.labels[idx], self.transform)


class TextClassificationDataset(Dataset):
    """In-memory (text or (text_a, text_b), int label) pairs; no tokenization."""

    def __init__(self, texts: Sequence[TextInput], labels: Sequence[int]) -> None:
        if len(texts) != len(labels):
            raise ValueError(f"{len(texts)} texts but {len(labels)} labels; they must match")
        self.texts = list(texts)
        self.labels = [int(v) for v in labels]

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[TextInput, int]:
        return self.texts[index], self.labels[index]

    def subset(self, indices: Sequence[int]) -> TextClassificationDataset:
        """A new dataset holding the rows at `indices`."""
        return TextClassificationDataset([self.texts[i] for i in indices], [self.labels[i] for i in indices])


class HFImageDataset(Dataset):
    """Rows {"image": PIL image, "label": int} of a Hugging Face dataset, read lazily and transformed."""

    def __init__(
        self, rows: Any, transform: Transform, image_key: str = "image", label_key: str = "label"
    ) -> None:
        self.rows = rows
        self.transform = transform
        self.image_key = image_key
        self.label_key = label_key

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        row = self.rows[int(index)]
        image = row[self.image_key]
        if hasattr(image, "convert"):
            image = image.convert("RGB")
        return self.transform(image), int(row[self.label_key])


def derive_seed(seed: int, purpose: str) -> int:
    """A stable 63-bit seed for `purpose` derived from `seed` (independent streams per purpose)."""
    digest = hashlib.sha256(f"arnq-data:{purpose}:{int(seed)}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & 0x7FFF_FFFF_FFFF_FFFF


def seeded_indices(n: int, k: int, seed: int, purpose: str) -> list[int]:
    """`k` distinct indices of range(n), in random order, drawn deterministically from (seed, purpose)."""
    if not 0 <= k <= n:
        raise ValueError(f"cannot draw {k} distinct indices from {n} examples")
    gen = torch.Generator().manual_seed(derive_seed(seed, purpose))
    return torch.randperm(n, generator=gen)[:k].tolist()


def take(dataset: Dataset, indices: Sequence[int]) -> Dataset:
    """Rows `indices` of `dataset`: a compact copy for in-memory datasets, else a torch Subset."""
    subset = getattr(dataset, "subset", None)
    if callable(subset):
        return subset(indices)
    return Subset(dataset, list(indices))


def make_task_data(
    cfg: DataConfig,
    *,
    task: str,
    modality: str,
    num_classes: int,
    full_train: Dataset,
    test: Dataset,
    class_names: Sequence[str] = (),
) -> TaskData:
    """Apply cfg.train_subset and draw cfg.calib_size calibration rows from the full train split."""
    n_train = len(full_train)  # type: ignore[arg-type]
    if cfg.calib_size > n_train:
        raise ValueError(
            f"DataConfig.calib_size={cfg.calib_size} exceeds the {n_train} examples of the "
            f"'{cfg.name}' train split; pass calib_size <= {n_train}"
        )
    if cfg.train_subset is not None and cfg.train_subset > n_train:
        raise ValueError(
            f"DataConfig.train_subset={cfg.train_subset} exceeds the {n_train} examples of the "
            f"'{cfg.name}' train split; pass train_subset <= {n_train} or None for all of it"
        )
    train = full_train
    if cfg.train_subset is not None:
        train = take(full_train, seeded_indices(n_train, cfg.train_subset, cfg.seed, "train_subset"))
    calib = take(full_train, seeded_indices(n_train, cfg.calib_size, cfg.seed, "calib"))
    return TaskData(
        name=cfg.name,
        task=task,
        modality=modality,
        num_classes=num_classes,
        train=train,
        calib=calib,
        test=test,
        class_names=tuple(class_names),
    )


def load_hub_dataset(path: str, config_name: str | None, what: str, local_hint: str, **kwargs: Any) -> Any:
    """datasets.load_dataset(path, config_name) that fails fast with a clear error when the Hub is unreachable."""
    import datasets

    offline = bool(datasets.config.HF_HUB_OFFLINE)
    if not os.path.exists(path) and not offline and not hub.hub_reachable():
        raise DataUnavailableError(
            f"cannot load {what}: {hub.UNREACHABLE}. {local_hint} If the dataset is already in the local "
            "Hugging Face cache, set HF_DATASETS_OFFLINE=1 to load the cached copy."
        )
    try:
        return datasets.load_dataset(path, config_name, **kwargs)
    except Exception as exc:  # datasets raises many types (ConnectionError, FileNotFoundError, ValueError...)
        mode = " (offline mode is on)" if offline else ""
        raise DataUnavailableError(
            f"cannot load {what} with datasets.load_dataset({path!r}, {config_name!r}){mode}: "
            f"{type(exc).__name__}: {exc}. {local_hint}"
        ) from exc
