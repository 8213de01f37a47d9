"""The results store: durable appends, torn-line tolerance, last row wins, clear write errors."""

import json
import os
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from harness.store import (
    StoreError,
    append_row,
    finished_ids,
    git_commit,
    git_dirty,
    provenance,
    read_rows,
    row_commit,
    row_provenance,
    utc_timestamp,
)


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


def test_provenance_names_the_commit_its_state_and_the_libraries():
    info = provenance()
    assert set(json.loads(info["versions"])) >= {"torch", "timm", "transformers"}
    assert info["git_commit"] == git_commit() and info["git_dirty"] == git_dirty()
    assert row_provenance() == {"git_commit": info["git_commit"], "git_dirty": info["git_dirty"]}
    assert info["git_commit"] is None or len(info["git_commit"]) == 40  # a clean hash: dirtiness is its own field
    root = Path(__file__).resolve().parents[2]
    top = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=root, capture_output=True, text=True)
    if top.returncode == 0 and Path(top.stdout.strip()).resolve() == root:  # this package runs from a checkout:
        assert info["git_commit"] is not None and info["git_dirty"] is not None  # rows must name its commit


def _git(repo, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "commit.gpgsign=false",
                           *args], cwd=repo, capture_output=True, text=True, check=True).stdout.strip()


def test_git_state_of_a_checkout_clean_then_dirty(tmp_path):
    assert git_commit(tmp_path) is None and git_dirty(tmp_path) is None  # not a checkout
    _git(tmp_path, "init", "-q")
    (tmp_path / "code.py").write_text("x = 1\n")
    _git(tmp_path, "add", "code.py")
    _git(tmp_path, "commit", "-q", "-m", "first")
    head = _git(tmp_path, "rev-parse", "HEAD")
    assert git_commit(tmp_path) == head and git_dirty(tmp_path) is False
    (tmp_path / "notes.txt").write_text("untracked\n")
    assert git_dirty(tmp_path) is False  # untracked files do not make the tree dirty
    (tmp_path / "code.py").write_text("x = 2\n")
    assert git_commit(tmp_path) == head and git_dirty(tmp_path) is True
    _git(tmp_path, "add", "code.py")
    assert git_dirty(tmp_path) is True  # staged but not committed
    (tmp_path / "sub").mkdir()
    assert git_commit(tmp_path / "sub") is None  # only the top level of a checkout, never an enclosing one


def test_row_commit_reads_old_and_new_rows():
    commit = "0ad042514f2cb3694d54a8f2a11aacdbea782ae1"
    assert row_commit({"git_commit": commit + "+dirty"}) == (commit, True)  # rows written before git_dirty
    assert row_commit({"git_commit": commit}) == (commit, None)
    assert row_commit({"git_commit": commit, "git_dirty": False}) == (commit, False)
    assert row_commit({"git_commit": None, "git_dirty": None}) == (None, None)
    assert row_commit({}) == (None, None)


def test_utc_timestamp_is_iso_8601_utc_to_the_second():
    when = datetime(2026, 3, 1, 14, 5, 9, 999_000, tzinfo=timezone(timedelta(hours=2)))
    assert utc_timestamp(when) == "2026-03-01T12:05:09+00:00"
    now = utc_timestamp()
    parsed = datetime.fromisoformat(now)
    assert parsed.utcoffset() == timedelta(0) and parsed.microsecond == 0
    assert abs((datetime.now(timezone.utc) - parsed).total_seconds()) < 5
