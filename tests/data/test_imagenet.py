"""imagenet: a tiny ImageFolder fixture, the default eval transform, layout errors and a hub source."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from arnq.data import DataConfig, DataUnavailableError, load_data
from tests.data.conftest import labels_of


def _image_tree(root: Path, classes: tuple[str, ...] = ("n01", "n02", "n03"), per_class: int = 4) -> Path:
    from PIL import Image

    for split in ("train", "val"):
        for c, wnid in enumerate(classes):
            folder = root / split / wnid
            folder.mkdir(parents=True)
            for k in range(per_class):
                value = 40 * c + 10 * k + (5 if split == "val" else 0)
                Image.new("RGB", (10, 12), (value, value, value)).save(folder / f"img{k}.png")
    return root


def test_imagenet_folder(tmp_path: Path) -> None:
    from torchvision import transforms

    root = _image_tree(tmp_path / "inet")
    tf = transforms.Compose([transforms.Resize((8, 8)), transforms.ToTensor()])
    td = load_data(DataConfig("imagenet", root=str(root), calib_size=5, seed=0), transform=tf)
    assert (td.task, td.modality, td.num_classes, td.class_names) == (
        "imagenet",
        "image",
        3,
        ("n01", "n02", "n03"),
    )
    assert (len(td.train), len(td.test), len(td.calib)) == (12, 12, 5)
    x, y = td.test[0]
    assert x.shape == (3, 8, 8) and x.dtype == torch.float32
    assert sorted(labels_of(td.test)) == [0] * 4 + [1] * 4 + [2] * 4
    # pixel values identify the image: val images are offset by 5, train ones are not
    train_values = {round(td.train[i][0][0, 0, 0].item() * 255) for i in range(12)}
    assert train_values == {40 * c + 10 * k for c in range(3) for k in range(4)}
    calib_values = [round(td.calib[i][0][0, 0, 0].item() * 255) for i in range(5)]
    assert len(set(calib_values)) == 5 and set(calib_values) <= train_values
    for i in range(5):  # labels follow the class folder of each calibration image
        value = round(td.calib[i][0][0, 0, 0].item() * 255)
        assert td.calib[i][1] == value // 40
    other = load_data(DataConfig("imagenet", root=str(root), calib_size=5, seed=1), transform=tf)
    assert [round(other.calib[i][0][0, 0, 0].item() * 255) for i in range(5)] != calib_values
    sub = load_data(DataConfig("imagenet", root=str(root), calib_size=2, train_subset=6), transform=tf)
    assert len(sub.train) == 6 and len(sub.test) == 12


def test_imagenet_default_transform_and_env_var(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _image_tree(tmp_path / "inet", per_class=1)
    monkeypatch.setenv("ARNQ_IMAGENET", str(root))
    td = load_data(DataConfig("imagenet", calib_size=2))
    x, _ = td.test[0]
    assert x.shape == (3, 224, 224) and x.dtype == torch.float32
    expected = (5 / 255 - 0.485) / 0.229  # class n01 val image, red channel, ImageNet-normalized
    assert x[0].mean().item() == pytest.approx(expected, abs=1e-4)


def test_imagenet_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ARNQ_IMAGENET", raising=False)
    with pytest.raises(DataUnavailableError, match=r"no dataset location.*train/<wnid>.*ARNQ_IMAGENET.*root"):
        load_data(DataConfig("imagenet"))
    with pytest.raises(DataUnavailableError, match=r"no 'train' folder.*<root>/val/<wnid>"):
        load_data(DataConfig("imagenet", root=str(tmp_path)))
    flat = tmp_path / "flat"
    (flat / "train" / "n01").mkdir(parents=True)
    (flat / "val").mkdir()
    (flat / "val" / "x.JPEG").write_bytes(b"")
    with pytest.raises(DataUnavailableError, match=r"val has no class sub-folders"):
        load_data(DataConfig("imagenet", root=str(flat)))
    mismatch = _image_tree(tmp_path / "mm", per_class=1)
    (mismatch / "val" / "n03" / "img0.png").rename(mismatch / "val" / "n02" / "extra.png")
    (mismatch / "val" / "n03").rmdir()
    with pytest.raises(
        DataUnavailableError, match=r"train has 3 class folders and val 2.*only in train: \['n03'\]"
    ):
        load_data(DataConfig("imagenet", root=str(mismatch)))


def test_imagenet_hf_source(monkeypatch: pytest.MonkeyPatch, hf_offline: Path) -> None:
    import datasets
    from PIL import Image

    features = datasets.Features(
        {"image": datasets.Image(), "label": datasets.ClassLabel(names=["cat", "dog"])}
    )

    def split(n: int, offset: int) -> datasets.Dataset:
        images = [Image.new("RGB", (6, 6), (offset + i, 0, 0)) for i in range(n)]
        return datasets.Dataset.from_dict(
            {"image": images, "label": [i % 2 for i in range(n)]}, features=features
        )

    calls = []

    def fake_load(path: str, name: str | None = None, **kwargs: object) -> datasets.DatasetDict:
        calls.append((path, name))
        return datasets.DatasetDict({"train": split(6, 0), "validation": split(4, 100)})

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    td = load_data(DataConfig("imagenet", root="hf:my/imagenet", calib_size=3), transform=lambda im: im.size)
    assert calls == [("my/imagenet", None)]
    assert (td.num_classes, td.class_names, len(td.train), len(td.test), len(td.calib)) == (
        2,
        ("cat", "dog"),
        6,
        4,
        3,
    )
    assert td.test[1] == ((6, 6), 1)

    def failing_load(path: str, name: str | None = None, **kwargs: object) -> None:
        raise ConnectionError("offline")

    monkeypatch.setattr(datasets, "load_dataset", failing_load)
    with pytest.raises(DataUnavailableError, match=r"my/imagenet.*ConnectionError: offline.*ARNQ_IMAGENET"):
        load_data(DataConfig("imagenet", root="hf:my/imagenet"))
