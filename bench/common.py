"""Shared by the benchmark scripts: Ray hygiene, fresh stage caches, figures from a run's rows."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

#: the repository root: the benchmarks run from it (`python -m bench.NAME`) and read its files
ROOT = Path(__file__).resolve().parent.parent

#: cache kinds a benchmark measures (rebuilt in a fresh cache); everything else is reused
STAGE_KINDS = ("finetunes", "trials")


def ray_hygiene(home: Path) -> None:
    """No usage stats and no cloud-metadata probe from Ray's head (a local-provider bootstrap file in HOME).

    The user's artifact cache is pinned first ($ARNQ_CACHE), so the FP checkpoints that
    `fresh_cache` links in are found under the real HOME, not the benchmark's."""
    from arnq.cache import cache_root

    os.environ.setdefault("ARNQ_CACHE", str(cache_root()))
    home.mkdir(parents=True, exist_ok=True)
    (home / "ray_bootstrap_config.yaml").write_text("provider:\n  type: local\n")
    os.environ["HOME"] = str(home)
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    os.environ.setdefault("WANDB_MODE", "offline")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


def fresh_cache(path: Path) -> Path:
    """A cache root where the FP models (and any other non-stage entries) of the user's cache are
    linked in, and fine-tunes and trial results start empty: what a benchmark times is built."""
    from arnq.cache import cache_root, linked_cache

    return linked_cache(path, cache_root(), STAGE_KINDS)


def epochs_run(rows: list[dict[str, Any]], epochs: int) -> int:
    """Fine-tuning epochs the rows' trials ran (a stopped trial ran until its stop)."""
    total = 0
    for row in rows:
        if row.get("status") == "stopped":
            total += int(row.get("stopped_at_epoch") or 0)
        elif row.get("status") == "ok" and not row.get("finetune_cached"):
            total += epochs
    return total


def markdown(rows: list[dict[str, Any]]) -> str:
    keys = list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(str(r[k]) for k in keys) + " |" for r in rows]
    return "\n".join(lines)
