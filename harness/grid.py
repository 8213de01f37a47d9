"""Grid expansion: a space's axes into typed `TrialSpec`s, ordered so each fine-tune is built once.

Distinct fine-tunes run first, one trial each, so the cells that reuse them find the
cache warm instead of waiting on a lock (`schedule`).
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from arnq.arms import ARMS, PlainConfig, arm_config
from arnq.cache import content_key
from arnq.finetune import FinetuneConfig
from arnq.ptq import ptq_config
from harness.pipeline import TrialSpec, cell_fields, get_key

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
        arm_config(arm, **combo)  # validate every point before anything runs
    return combos


def trial_id(spec: TrialSpec) -> str:
    return content_key(spec.to_dict())


def ended_row(spec: TrialSpec, status: str, **fields: Any) -> dict[str, Any]:
    """The row of a trial that ended without a result (failed with an `error`, or stopped)."""
    return {**cell_fields(spec), "trial_id": trial_id(spec), "status": status, **fields}


def build_trials(
    models: Sequence[str], bits: Sequence[str], ptq: Sequence[tuple[str, Mapping[str, Any]]],
    arms: Sequence[tuple[str, Mapping[str, Any]]], seeds: Sequence[int], finetune: FinetuneConfig,
    calib_size: int | None = None, fp_seed: int = 0,
) -> list[TrialSpec]:
    """Every (model, bits, PTQ method, arm point, seed) cell; the plain baseline is always included.

    `ptq` and `arms` are (name, params) pairs; a list in an arm's params is a grid over it.
    """
    arm_points = [arm_config(name, **p) for name, params in arms for p in expand_params(name, params)]
    if not any(isinstance(a, PlainConfig) for a in arm_points):
        arm_points.insert(0, PlainConfig())
    return [
        TrialSpec(model=m, ptq=ptq_config(name, b, calib_size=calib_size, **params), arm=a, seed=s,
                  finetune=finetune, fp_seed=fp_seed)
        for name, params in ptq
        for m, b, a, s in itertools.product(models, bits, arm_points, seeds)
    ]


def schedule(specs: Sequence[TrialSpec], costs: Any = None) -> list[TrialSpec]:
    """Specs reordered so each distinct fine-tune appears once before any trial that reuses it.

    Without `costs`, the fine-tune producers of different FP models are interleaved
    (round-robin, in the order the models first appear): the first trials of a fresh sweep
    build the FP checkpoints side by side, instead of two trials of one model started
    together leaving a slot idle while one waits on the other's build. With `costs`
    (`harness.plan.TrialCosts`: estimated seconds per trial and per FP build, and the slots),
    the producers follow a simulated list schedule (`cost_order`) and the reusing trials come
    after them, longest first (docs/api.md#typed-trials).
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
    if costs is not None:
        producers = [s for queue in by_model.values() for s in queue]
        return cost_order(producers, costs) + sorted(rest, key=lambda s: -costs.seconds.get(trial_id(s), 0.0))
    queues = list(by_model.values())
    first = [q[i] for i in range(max(map(len, queues), default=0)) for q in queues if i < len(q)]
    return first + rest


def cost_order(specs: Sequence[TrialSpec], costs: Any) -> list[TrialSpec]:
    """The order in which a greedy list schedule on `costs.slots` slots starts `specs`.

    Ray Tune starts trials in the order given, one per slot as slots free up. Each time a
    slot frees, the simulation starts the longest trial that can run at once: one whose FP
    checkpoint is ready, or the first of its FP model, which builds the checkpoint
    (`costs.build`) before its own work while that model's other trials wait. When every
    remaining trial would wait, it starts the one whose checkpoint is ready first. Longest
    first keeps the short trials for the end, where they fill the slots that would otherwise
    idle while the last long trial runs.
    """
    timed = [(costs.seconds.get(trial_id(s), 0.0), s) for s in specs]
    queues: dict[tuple[str, int], list[tuple[float, TrialSpec]]] = {}  # per FP model, longest last (ties: given order first)
    for _, (seconds, spec) in sorted(enumerate(timed), key=lambda item: (item[1][0], -item[0])):
        queues.setdefault((spec.model, spec.fp_seed), []).append((seconds, spec))
    free = [0.0] * max(int(costs.slots), 1)
    ready: dict[tuple[str, int], float] = {}  # FP checkpoint -> when its build ends (started ones only)
    order: list[TrialSpec] = []
    while queues:
        slot = min(range(len(free)), key=free.__getitem__)
        now = free[slot]
        # a model's trials all start at the same time: its longest goes first
        starts = {fp: (max(now, ready[fp]), q[-1][0]) if fp in ready else (now, costs.build.get(fp, 0.0) + q[-1][0])
                  for fp, q in queues.items()}
        fp = min(starts, key=lambda f: (starts[f][0], -starts[f][1]))
        ready.setdefault(fp, now + costs.build.get(fp, 0.0))
        free[slot] = starts[fp][0] + starts[fp][1]
        order.append(queues[fp].pop()[1])
        if not queues[fp]:
            del queues[fp]
    return order


def simulated_wall(order: Sequence[TrialSpec], costs: Any) -> float:
    """Seconds until the last of `order` ends when `costs.slots` slots start them in this order.

    What Ray Tune does with the order `schedule` gives: a freed slot starts the next trial;
    the first trial of an FP model builds its checkpoint while that model's later trials wait
    for it, and a trial reusing a fine-tune waits for the trial that builds it.
    """
    free = [0.0] * max(int(costs.slots), 1)
    ready: dict[tuple[str, int], float] = {}
    built: dict[str, float] = {}  # fine-tune key -> when its producer ends
    end = 0.0
    for spec in order:
        slot = min(range(len(free)), key=free.__getitem__)
        fp, key = (spec.model, spec.fp_seed), get_key(spec)
        start = free[slot]
        if fp not in ready:
            ready[fp] = start + costs.build.get(fp, 0.0)
        start = max(start, ready[fp], built.get(key, 0.0))
        free[slot] = start + costs.seconds.get(trial_id(spec), 0.0)
        built.setdefault(key, free[slot])
        end = max(end, free[slot])
    return end
