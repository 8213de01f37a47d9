"""Dataset registry core: names, config validation, listing and seeded index draws."""

from __future__ import annotations

from pathlib import Path

import pytest

from arnq.data import DATASETS, DataConfig, describe_datasets, seeded_indices
from arnq.registry import UnknownNameError


def test_registered_names() -> None:
    expected = {"mnist5k", "fashion_mnist", "rotten_tomatoes", "tweets", "imagenet"} | {
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
    assert len(rows) == len(DATASETS) == 12
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
    assert (rows["fashion_mnist"]["embedded"], rows["fashion_mnist"]["num_classes"]) == (True, 10)
    assert (rows["tweets"]["modality"], rows["tweets"]["num_classes"]) == ("text", 3)
    assert rows["glue_mnli"]["num_classes"] == 3 and rows["glue_mnli"]["task"] == "glue/mnli"
    assert rows["glue_qqp"]["num_classes"] == 2
    assert all(r["source"] for r in rows.values())


def test_seeded_indices_deterministic_and_distinct() -> None:
    a = seeded_indices(100, 30, seed=1, purpose="calib")
    assert a == seeded_indices(100, 30, seed=1, purpose="calib")
    assert len(set(a)) == 30 and min(a) >= 0 and max(a) < 100
    assert a != seeded_indices(100, 30, seed=2, purpose="calib")
    assert a != seeded_indices(100, 30, seed=1, purpose="train_subset")
    with pytest.raises(ValueError, match="cannot draw 101"):
        seeded_indices(100, 101, seed=0, purpose="calib")
