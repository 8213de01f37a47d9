"""The provenance header of a report: which code, libraries, machines and rows its numbers come from."""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

import pandas as pd

from harness.store import dirty_rows, row_commit

STATUS_ORDER = ("failed", "stopped")  # then any other status, then missing


def distinct(rows: Sequence[Mapping[str, Any]], key: str) -> str:
    """The rows' distinct values of `key`, first-seen order, comma-separated; '' if none has it."""
    return ", ".join(dict.fromkeys(str(r[key]) for r in rows if r.get(key) is not None))


def machine_description() -> str:
    """The machine writing the report: architecture, processor, CPU count and CUDA device, if any."""
    machine, processor = platform.machine(), platform.processor()
    text = machine + (f" ({processor})" if processor and processor != machine else "") + f", {os.cpu_count()} CPUs"
    try:
        import torch
    except ImportError:
        return text
    if torch.cuda.is_available():
        text += f", {torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}"
    return text


def _commits(rows: Sequence[Mapping[str, Any]]) -> str:
    """The rows' distinct commits, '+dirty' where the tree had uncommitted changes (old rows carry it in the hash)."""
    stamps = (f"{commit}{'+dirty' if dirty else ''}" for commit, dirty in map(row_commit, rows) if commit)
    return ", ".join(dict.fromkeys(stamps))


def _utc(when: datetime) -> str:
    return when.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _versions(rows: Sequence[Mapping[str, Any]]) -> str:
    texts = dict.fromkeys(r["versions"] for r in rows if r.get("versions"))
    return " | ".join(", ".join(f"{k} {v}" for k, v in sorted(json.loads(text).items())) for text in texts)


def provenance(
    rows: Sequence[Mapping[str, Any]], space: Mapping[str, Any] | None, name: str, issues: pd.DataFrame, *,
    now: datetime | None, hardware: str | None, rows_written: datetime | None,
) -> dict[str, str]:
    """What every table says about where its numbers come from."""
    statuses = pd.Series([r["status"] for r in rows]).value_counts()
    counts = ", ".join(f"{statuses[s]} {s}" for s in dict.fromkeys(("ok", *STATUS_ORDER, *statuses.index))
                       if s in statuses)
    seeds = sorted({r["seed"] for r in rows if r["status"] == "ok"})
    dirty = dirty_rows(rows)
    marks = {"uncommitted_code": f"{dirty} of {len(rows)} rows ran from a tree with uncommitted changes "
                                 "(git_commit +dirty): their code is in no commit, so arnq reproduce cannot "
                                 "regenerate them"} if dirty else {}
    return {
        "space": name,
        "space_hash": (space or {}).get("source_hash") or distinct(rows, "space_hash") or "unknown",
        "git_commit": _commits(rows) or "unknown",
        "versions": _versions(rows) or "unknown",
        "rows": f"{len(rows)} trials ({counts}); grid cells without a row: {int((issues['status'] == 'missing').sum())}",
        "newest_row": _utc(rows_written) if rows_written else "unknown",
        "report_date": _utc(now or datetime.now(timezone.utc)),
        "hardware": hardware or machine_description(),
        "trial_hosts": distinct(rows, "host") or "not recorded",
        "trial_cpus": distinct(rows, "cpu") or "not recorded",
        "seeds": f"{len(seeds)} ({', '.join(map(str, seeds))})",
        **marks,
    }
