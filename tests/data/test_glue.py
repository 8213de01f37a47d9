"""GLUE: local jsonl and saved DatasetDict fixtures, local errors, fast hub failures."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from arnq import hub
from arnq.data import DataConfig, DataUnavailableError, load_data


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
    monkeypatch.setattr(hub, "hub_reachable", lambda timeout=3.0: False)

    def must_not_run(*args: object, **kwargs: object) -> None:
        raise AssertionError("load_dataset must not be called when the hub is unreachable")

    monkeypatch.setattr(datasets, "load_dataset", must_not_run)
    with pytest.raises(
        DataUnavailableError, match=r"GLUE task 'mrpc'.*unreachable.*root=.*HF_DATASETS_OFFLINE=1"
    ):
        load_data(DataConfig("glue_mrpc"))
