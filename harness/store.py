"""The results store of a run: one JSON line per trial, appended and fsynced as trials end.

A line is written with one `write` call of the whole row and flushed to disk before the
next, so a killed driver leaves at most a torn last line: `read_rows` skips it and the
next append cuts it off.
A trial may appear more than once (a failed trial retried by `--resume`); the last row
of a trial id wins. Rows are never rewritten in place. Rows record the code they come
from (`provenance`: the commit, whether tracked files differed from it, library versions).
"""

from __future__ import annotations

import json
import logging
import os
import platform
import socket
import subprocess
import time
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
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


def repo_root() -> Path:
    """The checkout this package runs from (where the git functions look by default)."""
    return Path(__file__).resolve().parent.parent


def _git(repo: Path | str | None, *args: str) -> str | None:
    """stdout of `git args` in `repo` if `repo` is the top level of a git checkout, else None."""
    repo = Path(repo).resolve() if repo is not None else repo_root()

    def run(*cmd: str) -> str:
        return subprocess.run(["git", *cmd], cwd=repo, capture_output=True, text=True, timeout=10,
                              check=True).stdout.strip()

    try:
        if Path(run("rev-parse", "--show-toplevel")).resolve() != repo:
            return None  # e.g. an installed copy inside another checkout: that checkout's state is not ours
        return run(*args)
    except (OSError, subprocess.SubprocessError):
        return None


def git_commit(repo: Path | str | None = None) -> str | None:
    """The commit checked out at `repo` (default: this package's checkout), or None if it is not a checkout."""
    return _git(repo, "rev-parse", "HEAD")


def git_dirty(repo: Path | str | None = None) -> bool | None:
    """Whether tracked files at `repo` differ from its commit (untracked files ignored); None if not a checkout."""
    status = _git(repo, "status", "--porcelain", "--untracked-files=no")
    return None if status is None else bool(status)


@lru_cache(maxsize=1)
def _provenance_of_this_checkout() -> tuple[str | None, bool | None]:
    return git_commit(), git_dirty()


def row_provenance() -> dict[str, Any]:
    """`git_commit` and `git_dirty` of the code a row comes from, read once per process (the code it imported)."""
    commit, dirty = _provenance_of_this_checkout()
    return {"git_commit": commit, "git_dirty": dirty}


def row_commit(row: Mapping[str, Any]) -> tuple[str | None, bool | None]:
    """(commit, dirty) of a row; older rows marked a dirty tree with '+dirty' on the commit instead."""
    commit = row.get("git_commit")
    if isinstance(commit, str) and commit.endswith("+dirty"):
        return commit.removesuffix("+dirty"), True
    return commit, row.get("git_dirty")


def dirty_rows(rows: Iterable[Mapping[str, Any]]) -> int:
    """How many rows were computed from a tree with uncommitted changes."""
    return sum(1 for r in rows if row_commit(r)[1])


def utc_timestamp(when: datetime | None = None) -> str:
    """ISO 8601 UTC time to the second (now by default), e.g. for a row's `started_at` / `ended_at`."""
    return (when or datetime.now(timezone.utc)).astimezone(timezone.utc).isoformat(timespec="seconds")


def provenance() -> dict[str, Any]:
    """What every row of a run records about the code and libraries that produced it."""
    from arnq.cache import library_versions

    return {**row_provenance(), "versions": json.dumps(library_versions(), sort_keys=True),
            "python": platform.python_version()}


def machine_fields() -> dict[str, Any]:
    """What a row records about where it was computed: `host`, `cpu` (`cpu_identity`) and torch's `threads`, the
    two a seeded run's bit-for-bit repeatability depends on."""
    import torch

    return {"host": socket.gethostname(), "cpu": cpu_identity(), "threads": torch.get_num_threads()}


@lru_cache(maxsize=1)
def cpu_identity() -> str:
    """The CPU this process computes on, as precisely as float results depend on it: vendor, family and model
    number, model name, and the instruction set torch dispatches its kernels for, e.g.
    'GenuineIntel family 6 model 207 (Intel(R) Xeon(R) Processor), torch AVX512'. Two CPUs that differ here
    may round the same float reductions differently, so a seeded run is bit-for-bit repeatable only on the
    same identity (and thread count)."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as f:  # Linux; the first processor's block
            for line in f:
                if not line.strip():
                    break
                key, _, value = line.partition(":")
                fields[key.strip()] = value.strip()
    except OSError:
        pass
    if fields:
        text = (f"{fields.get('vendor_id', '?')} family {fields.get('cpu family', '?')} model {fields.get('model', '?')}"
                f" ({fields.get('model name', '?')})")
    else:
        text = f"{platform.machine()} ({platform.processor() or 'processor not reported'})"
    try:
        import torch

        text += f", torch {torch.backends.cpu.get_cpu_capability()}"
    except (ImportError, AttributeError):
        pass
    return text
