"""The results store: durable appends, torn-line tolerance, last row wins, clear write errors."""

import json
import os

import pytest

from harness.store import StoreError, append_row, finished_ids, git_commit, provenance, read_rows


def test_rows_round_trip_and_last_row_of_a_trial_wins(tmp_path):
    path = tmp_path / "rows.jsonl"
    append_row(path, {"trial_id": "a", "status": "failed", "error": "boom"})
    append_row(path, {"trial_id": "b", "status": "ok", "q_acc": 80.0})
    append_row(path, {"trial_id": "a", "status": "ok", "q_acc": 81.0})  # the retry of a failed trial
    rows = read_rows(path)
    assert [r["trial_id"] for r in rows] == ["a", "b"]
    assert rows[0] == {"trial_id": "a", "status": "ok", "q_acc": 81.0}
    assert finished_ids(path) == {"a", "b"}


def test_a_torn_last_line_is_skipped_and_cut_off_by_the_next_append(tmp_path):
    path = tmp_path / "rows.jsonl"
    append_row(path, {"trial_id": "a", "status": "ok"})
    with path.open("a") as f:  # a driver killed in the middle of a write
        f.write('{"trial_id": "b", "sta')
    assert [r["trial_id"] for r in read_rows(path)] == ["a"]
    append_row(path, {"trial_id": "b", "status": "ok"})
    lines = path.read_text().splitlines()
    assert len(lines) == 2 and json.loads(lines[1]) == {"trial_id": "b", "status": "ok"}
    assert finished_ids(path) == {"a", "b"}


def test_a_corrupt_line_inside_the_store_is_an_error_not_a_silent_loss(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text('{"trial_id": "a", "status": "ok"}\nnot json\n{"trial_id": "b", "status": "ok"}\n')
    with pytest.raises(ValueError, match="line 2 is not JSON"):
        read_rows(path)


def test_an_unwritable_store_raises_a_clear_error_and_keeps_earlier_rows(tmp_path, monkeypatch):
    from pathlib import Path

    path = tmp_path / "rows.jsonl"
    append_row(path, {"trial_id": "a", "status": "ok"})
    real_open = Path.open

    def read_only(self, mode="r", *args, **kwargs):
        if self == path and ("a" in mode or "+" in mode):
            raise PermissionError(13, "Permission denied")
        return real_open(self, mode, *args, **kwargs)

    monkeypatch.setattr(Path, "open", read_only)  # chmod does not stop root, so the filesystem is faked
    with pytest.raises(StoreError, match="Permission denied.*rows already there are intact"):
        append_row(path, {"trial_id": "b", "status": "ok"})
    monkeypatch.undo()
    assert [r["trial_id"] for r in read_rows(path)] == ["a"]


def test_a_full_disk_raises_a_clear_error(tmp_path, monkeypatch):
    path = tmp_path / "rows.jsonl"
    append_row(path, {"trial_id": "a", "status": "ok"})

    def full(_fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(StoreError, match="No space left on device.*--resume"):
        append_row(path, {"trial_id": "b", "status": "ok"})
    monkeypatch.undo()
    assert read_rows(path)[0]["trial_id"] == "a"


def test_provenance_names_the_commit_and_the_libraries():
    info = provenance()
    assert set(json.loads(info["versions"])) >= {"torch", "timm", "transformers"}
    commit = git_commit()
    assert commit is None or len(commit.split("+")[0]) == 40
