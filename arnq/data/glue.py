"""GLUE classification tasks: `datasets.load_dataset("nyu-mll/glue", task)` or local data in DataConfig.root."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from arnq.data.base import (
    DataConfig,
    DatasetBuilder,
    DatasetInfo,
    DataUnavailableError,
    TaskData,
    TextClassificationDataset,
    TextInput,
    Transform,
    load_hub_dataset,
    make_task_data,
    register_dataset,
)


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
        dd = load_hub_dataset("nyu-mll/glue", task, f"GLUE task '{task}'", hint)
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
        return make_task_data(
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
    register_dataset(
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
