"""Grid expansion and a Ray-free local runner (a process pool), resumable from its rows file.

The Ray Tune sweep schedules the same `TrialSpec`s; this runner exists for scripted
experiments and for machines without Ray. Distinct fine-tunes run first, one trial
each, so the cells that reuse them find the cache warm instead of waiting on a lock.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import logging
import multiprocessing as mp
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from arnq.arms import ARMS
from arnq.cache import content_key
from arnq.finetune import FinetuneConfig
from harness.pipeline import TrialSpec, get_key, run_trial
from harness.store import FINISHED, append_row, provenance, read_rows

log = logging.getLogger(__name__)


def expand_params(arm: str, params: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The grid over an arm's params: a list is a grid over its values, except for tuple-valued
    fields (e.g. `sites`, `modules`), where a list is one value and a list of lists is a grid."""
    cfg_cls = ARMS.get(arm).config_cls
    tuple_fields = {f.name for f in dataclasses.fields(cfg_cls) if isinstance(f.default, tuple)}
    axes: list[list[tuple[str, Any]]] = []
    for key, value in params.items():
        is_grid = isinstance(value, list) and (key not in tuple_fields or all(isinstance(v, list) for v in value))
        values = value if is_grid else [value]
        if is_grid and not values:
            raise ValueError(f"arm '{arm}': {key}: an empty list is an empty grid; give at least one value")
        axes.append([(key, tuple(v) if isinstance(v, list) else v) for v in values])
    combos = [dict(c) for c in itertools.product(*axes)] if axes else [{}]
    for combo in combos:
        ARMS.get(arm).config(combo)  # validate every point before anything runs
    return combos


def trial_id(spec: TrialSpec) -> str:
    return content_key(spec.to_dict())


def ended_row(spec: TrialSpec, status: str, **fields: Any) -> dict[str, Any]:
    """The row of a trial that ended without a result (failed with an `error`, or stopped)."""
    return {**spec.to_dict(), "arm_params": json.dumps(dict(spec.arm_params), sort_keys=True),
            "trial_id": trial_id(spec), "status": status, **fields}


def build_trials(
    models: Sequence[str], bits: Sequence[str], ptq: Sequence[str], arms: Sequence[tuple[str, Mapping[str, Any]]],
    seeds: Sequence[int], finetune: FinetuneConfig, **common: Any,
) -> list[TrialSpec]:
    """Every (model, bits, ptq, arm point, seed) cell; the plain baseline is always included."""
    arm_points = [(name, p) for name, params in arms for p in expand_params(name, params)]
    if not any(name == "plain" for name, _ in arm_points):
        arm_points.insert(0, ("plain", {}))
    return [
        TrialSpec(model=m, bits=b, ptq=q, arm=a, arm_params=p, seed=s, finetune=finetune, **common)
        for m, b, q, (a, p), s in itertools.product(models, bits, ptq, arm_points, seeds)
    ]


def schedule(specs: Sequence[TrialSpec]) -> list[TrialSpec]:
    """Specs reordered so each distinct fine-tune appears once before any trial that reuses it.

    The fine-tune producers of different FP models are interleaved (round-robin, in the
    order the models first appear): the first trials of a fresh sweep build the FP
    checkpoints, and two trials of one model started side by side leave a slot idle while
    one waits on the other's build (quickstart, fresh cache: 28 vit_mnist trials were
    queued while a slot waited about 10 minutes for the minilm_rt checkpoint).
    """
    by_model: dict[tuple[str, int], list[TrialSpec]] = {}
    rest, seen = [], set()
    for spec in specs:
        key = get_key(spec)
        if key in seen:
            rest.append(spec)
        else:
            by_model.setdefault((spec.model, spec.fp_seed), []).append(spec)
            seen.add(key)
    queues = list(by_model.values())
    first = [q[i] for i in range(max(map(len, queues), default=0)) for q in queues if i < len(q)]
    return first + rest


def _worker_init(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    os.environ.setdefault("WANDB_MODE", "offline")
    logging.basicConfig(level=logging.WARNING)


def _run(spec: TrialSpec) -> dict[str, Any]:
    try:
        row = run_trial(spec)
    except Exception as exc:  # a failed cell is recorded, never silently dropped
        return ended_row(spec, "failed", error=f"{type(exc).__name__}: {exc}")
    row["trial_id"] = trial_id(spec)
    return row


def run_grid(specs: Iterable[TrialSpec], rows_path: Path, workers: int = 1, threads: int = 1) -> list[dict]:
    """Run every spec not already in `rows_path` (JSON lines, appended as trials finish);
    `workers=0` runs them in this process."""
    rows_path.parent.mkdir(parents=True, exist_ok=True)
    done = {r["trial_id"]: r for r in read_rows(rows_path)}
    finished = {k for k, r in done.items() if r.get("status") in FINISHED}
    todo = [s for s in schedule(list(specs)) if trial_id(s) not in finished]
    log.info("%d trials to run, %d already done", len(todo), len(finished))
    extra = provenance()
    start = time.perf_counter()
    with contextlib.ExitStack() as stack:
        if workers == 0:  # in this process, one trial at a time (debugging, tests)
            results = map(_run, todo)
        else:
            pool = stack.enter_context(
                mp.get_context("spawn").Pool(workers, initializer=_worker_init, initargs=(threads,))
            )
            results = pool.imap_unordered(_run, todo)
        for i, row in enumerate(results, 1):
            row.update(extra)
            append_row(rows_path, row)
            done[row["trial_id"]] = row
            log.info("[%d/%d] %s %s %s %s seed=%s: %s q_acc=%s (%.0f s elapsed)", i, len(todo), row.get("model"),
                     row.get("bits"), row.get("ptq"), row.get("arm"), row.get("seed"), row.get("status"),
                     row.get("q_acc"), time.perf_counter() - start)
    return list(done.values())
