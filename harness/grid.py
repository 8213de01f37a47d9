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


def schedule(specs: Sequence[TrialSpec]) -> list[TrialSpec]:
    """Specs reordered so each distinct fine-tune appears once before any trial that reuses it.

    The fine-tune producers of different FP models are interleaved (round-robin, in the
    order the models first appear): the first trials of a fresh sweep build the FP
    checkpoints side by side, instead of two trials of one model started together leaving
    a slot idle while one waits on the other's build (docs/api.md#typed-trials).
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


