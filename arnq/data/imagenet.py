"""imagenet: a local ImageFolder tree (root or $ARNQ_IMAGENET) or a Hugging Face dataset (root='hf:<name>')."""

from __future__ import annotations

import os
from pathlib import Path

from torch.utils.data import Dataset

from arnq.data.base import (
    DataConfig,
    DatasetInfo,
    DataUnavailableError,
    HFImageDataset,
    TaskData,
    Transform,
    load_hub_dataset,
    make_task_data,
    register_dataset,
)
from arnq.data.transforms import default_imagenet_transform

IMAGENET_ENV_VAR = "ARNQ_IMAGENET"
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
    dd = load_hub_dataset(name, None, f"imagenet from Hugging Face dataset '{name}'", hint)
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


@register_dataset(
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
    return make_task_data(
        cfg,
        task="imagenet",
        modality="image",
        num_classes=len(class_names),
        full_train=train,
        test=test,
        class_names=class_names,
    )
