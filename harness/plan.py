"""What a search space will cost before it runs: trials, distinct fine-tunes, PTQ
evaluations, what the cache already holds, and a time estimate from the models' cost
hints (`ModelSpec.cost`: seconds per 1,000 fine-tuning examples and per PTQ evaluation
on a reference 2-core CPU)."""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from arnq.cache import entry_path
from arnq.models import MODELS
from harness.pipeline import FINETUNE_KIND, get_key
from harness.space import Space


@dataclass
class Plan:
    trials: int
    finetunes: int  # distinct fine-tunes (the cache key of each trial's fine-tune)
    finetunes_cached: int
    ptq_evals: int  # one calibration + quantized test evaluation per trial
    per_model: dict[str, dict[str, Any]] = field(default_factory=dict)
    cpu_seconds: float | None = None  # None: a model without a cost hint
    slots: int = 1  # trials at once on the target
    unknown_cost: list[str] = field(default_factory=list)

    @property
    def wall_seconds(self) -> float | None:
        return None if self.cpu_seconds is None else self.cpu_seconds / max(self.slots, 1)

    def lines(self) -> list[str]:
        out = [
            f"trials (PTQ evaluations): {self.trials}",
            f"distinct fine-tunes: {self.finetunes} ({self.finetunes_cached} already cached, "
            f"{self.finetunes - self.finetunes_cached} to run)",
        ]
        for model, info in self.per_model.items():
            out.append(f"  {model}: {info['trials']} trials, {info['finetunes']} fine-tunes "
                       f"({info['cached']} cached)")
        if self.cpu_seconds is None:
            out.append(f"cost estimate: unknown (no cost hint for {', '.join(self.unknown_cost)})")
        else:
            out.append(f"cost estimate: ~{human(self.cpu_seconds)} of trial time, ~{human(self.wall_seconds)} wall with "
                       f"{self.slots} trial(s) at once (reference 2-core CPU; ASHA stops make it less)")
        return out


def human(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def make_plan(space: Space, cache_root: Path | None = None, slots: int | None = None) -> Plan:
    specs = space.trials()
    seen: dict[str, Any] = {}
    for spec in specs:
        if spec.finetune.epochs:  # epochs 0: the FP checkpoint, nothing to fine-tune
            seen.setdefault(get_key(spec), spec)
    cached = {k for k, spec in seen.items() if entry_path(FINETUNE_KIND, spec.finetune_spec(), cache_root).exists()}
    trials_per_model = Counter(s.model for s in specs)
    ft_per_model = Counter(s.model for s in seen.values())
    cached_per_model = Counter(seen[k].model for k in cached)
    per_model = {m: {"trials": trials_per_model[m], "finetunes": ft_per_model[m], "cached": cached_per_model[m]}
                 for m in space.models}
    unknown = [m for m in space.models if not MODELS.get(m).cost]
    seconds = None
    if not unknown:
        seconds = 0.0
        examples_k = space.finetune.train_subset * space.finetune.epochs / 1000 if space.finetune.train_subset else None
        for m in space.models:
            cost = MODELS.get(m).cost
            todo = ft_per_model[m] - cached_per_model[m]
            if examples_k is None:
                unknown.append(f"{m} (finetune.train_subset is unset: the full train split)")
                continue
            seconds += todo * examples_k * cost["train_s_per_1k"] + trials_per_model[m] * cost["ptq_s"]
        seconds = None if unknown else seconds
    if slots is None:
        slots = max(1, int((os.cpu_count() or 1) // max(space.resources["cpu"], 1e-9))) if not space.resources["gpu"] \
            else 1
    return Plan(trials=len(specs), finetunes=len(seen), finetunes_cached=len(cached), ptq_evals=len(specs),
                per_model=per_model, cpu_seconds=seconds, slots=slots, unknown_cost=unknown)
