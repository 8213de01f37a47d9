"""The results store of a run: one JSON line per trial, appended and fsynced as trials end.

A line is written with one `write` call of the whole row and flushed to disk before the
next, so a killed driver leaves at most a torn last line: `read_rows` skips it and the
next append cuts it off.
A trial may appear more than once (a failed trial retried by `--resume`); the last row
of a trial id wins. Rows are never rewritten in place.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import subprocess
import time
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

ROWS = "rows.jsonl"
FINISHED = ("ok", "stopped")  # a trial in one of these states is not run again by --resume


class StoreError(OSError):
    """The results store cannot be written; earlier rows are intact."""


def read_rows(path: Path) -> list[dict[str, Any]]:
    """Rows of a store, the last row per trial id, in first-seen order; a torn last line is skipped."""
    if not path.exists():
        return []
    rows: dict[str, dict[str, Any]] = {}
    lines = path.read_text().splitlines()
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            if i == len(lines) - 1:  # the driver died mid-write: that trial simply runs again
                log.warning("%s: skipping a truncated last line", path)
                continue
            raise ValueError(f"{path}: line {i + 1} is not JSON; the results store is corrupted") from None
        rows[row["trial_id"]] = row
    return list(rows.values())


def finished_ids(path: Path) -> set[str]:
    return {r["trial_id"] for r in read_rows(path) if r.get("status") in FINISHED}


def append_row(path: Path, row: dict[str, Any]) -> None:
    """Append one row durably (a single write, flush and fsync)."""
    data = json.dumps(row, default=str) + "\n"
    try:
        _drop_torn_tail(path)
        with path.open("a") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
    except OSError as err:
        raise StoreError(
            f"cannot append to the results store {path}: {err.strerror or err}; the rows already there are intact. "
            "Free space or fix permissions, then rerun with --resume"
        ) from err


def _drop_torn_tail(path: Path) -> None:
    """Cut a torn last line (a writer killed mid-line) so the next row starts on a fresh line."""
    if not path.exists() or not path.stat().st_size:
        return
    with path.open("rb+") as f:
        f.seek(-1, os.SEEK_END)
        if f.read(1) == b"\n":
            return
        f.seek(0)
        data = f.read()
        keep = data.rfind(b"\n") + 1
        log.warning("%s: dropping a torn last line (%d bytes) before appending", path, len(data) - keep)
        f.truncate(keep)


def set_aside(run_dir: Path) -> Path | None:
    """Move an earlier run out of `run_dir` to `<run_dir>.<timestamp>` (nothing is deleted); its new path, or None."""
    if not run_dir.exists() or not any(run_dir.iterdir()):
        return None
    aside = run_dir.with_name(f"{run_dir.name}.{time.strftime('%Y%m%d-%H%M%S')}")
    run_dir.rename(aside)
    log.info("an earlier run of %s moved to %s", run_dir, aside)
    return aside


def append_rows(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    for row in rows:
        append_row(path, row)


@lru_cache(maxsize=1)
def git_commit() -> str | None:
    """The commit of the code that produced a row (with '+dirty' for local changes), or None."""
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+dirty" if dirty else "")


def provenance() -> dict[str, Any]:
    """What every row of a run records about the code and libraries that produced it."""
    from arnq.cache import library_versions

    return {"git_commit": git_commit(), "versions": json.dumps(library_versions(), sort_keys=True),
            "python": platform.python_version()}
