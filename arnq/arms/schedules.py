"""Noise schedules alpha(t): pure functions of the training step, like nanoGPT's `get_lr`.

Every schedule has the same signature, `fn(step, total, *, alpha_max, warmup_frac, n_steps)`,
ignores the parameters it does not use, is non-decreasing in `step` (noise is ramped in or
held, never faded out) and reaches `alpha_max` by `step == total`; steps beyond `total` stay
at the end value. Curves: docs/arms.md#schedules-schedule.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from pathlib import Path
from typing import Any

from arnq.registry import suggest

Schedule = Callable[..., float]

DEFAULT_PARAMS: dict[str, Any] = {"alpha_max": 1.0, "warmup_frac": 0.2, "n_steps": 4}


def _progress(step: int, total: int) -> float:
    """Fraction of training done, clamped to [0, 1]."""
    return min(max(step, 0), total) / total


def constant(step: int, total: int, *, alpha_max: float = 1.0, warmup_frac: float = 0.2, n_steps: int = 4) -> float:
    """alpha_max at every step."""
    return float(alpha_max)


def linear(step: int, total: int, *, alpha_max: float = 1.0, warmup_frac: float = 0.2, n_steps: int = 4) -> float:
    """Linear warm-up from 0 to alpha_max over the first warmup_frac of training, then constant."""
    if warmup_frac == 0:
        return float(alpha_max)
    return alpha_max * min(1.0, _progress(step, total) / warmup_frac)


def cosine(step: int, total: int, *, alpha_max: float = 1.0, warmup_frac: float = 0.2, n_steps: int = 4) -> float:
    """Half-cosine ramp from 0 at step 0 to alpha_max at the last step."""
    return 0.5 * (1.0 - math.cos(math.pi * _progress(step, total))) * alpha_max


def staircase(step: int, total: int, *, alpha_max: float = 1.0, warmup_frac: float = 0.2, n_steps: int = 4) -> float:
    """Staircase of n_steps equal stages: alpha_max * (k + 1) / n_steps in stage k."""
    stage = min(int(_progress(step, total) * n_steps), n_steps - 1)
    return alpha_max * (stage + 1) / n_steps


SCHEDULES: dict[str, Schedule] = {"constant": constant, "linear": linear, "cosine": cosine, "step": staircase}
#: The parameters each schedule actually reads (all accept every parameter).
SCHEDULE_PARAMS: dict[str, tuple[str, ...]] = {
    "constant": ("alpha_max",),
    "linear": ("alpha_max", "warmup_frac"),
    "cosine": ("alpha_max",),
    "step": ("alpha_max", "n_steps"),
}


def validate(name: str, total: int = 1, step: int = 0, **params: Any) -> dict[str, Any]:
    """Check a schedule name, its parameters and the step counter; returns the full parameter dict."""
    if name not in SCHEDULES:
        choices = sorted(SCHEDULES)
        raise ValueError(f"schedule={name!r}: unknown.{suggest(str(name), choices)} Valid schedules: {', '.join(choices)}")
    unknown = sorted(set(params) - set(DEFAULT_PARAMS))
    if unknown:
        raise ValueError(f"schedule parameters {unknown}: unknown; valid parameters are {', '.join(DEFAULT_PARAMS)}")
    full = {**DEFAULT_PARAMS, **params}
    if not (isinstance(total, numbers.Integral) and total >= 1):
        raise ValueError(f"total={total!r}: the number of training steps must be an integer >= 1")
    if not (isinstance(step, numbers.Integral) and step >= 0):
        raise ValueError(f"step={step!r}: use an integer >= 0 (steps beyond total stay at the end value)")
    if not full["alpha_max"] >= 0:
        raise ValueError(f"alpha_max={full['alpha_max']!r}: the noise scale must be >= 0 (1 = rounding-error variance)")
    if not 0 <= full["warmup_frac"] <= 1:
        raise ValueError(f"warmup_frac={full['warmup_frac']!r}: use a fraction of training in [0, 1]")
    if not (isinstance(full["n_steps"], numbers.Integral) and full["n_steps"] >= 1):
        raise ValueError(f"n_steps={full['n_steps']!r}: the staircase needs an integer number of stages >= 1")
    return full


def schedule_value(name: str, step: int, total: int, **params: Any) -> float:
    """alpha at `step` of `total` for the named schedule, after validating name and parameters."""
    full = validate(name, total, step, **params)
    return SCHEDULES[name](step, total, **full)


def describe_schedules() -> list[dict[str, str]]:
    """One row per schedule (name, one-line description, parameters it reads) for a CLI listing."""
    return [
        {
            "name": name,
            "description": (fn.__doc__ or "").strip().splitlines()[0],
            "params": ", ".join(f"{p}={DEFAULT_PARAMS[p]}" for p in SCHEDULE_PARAMS[name]),
        }
        for name, fn in SCHEDULES.items()
    ]


def plot_schedules(path: str | Path, total: int = 1000, **params: Any) -> Path:
    """Write a PNG with one alpha(step) curve per schedule; returns the path."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # lazy: plotting is optional
    from matplotlib.figure import Figure

    full = validate("constant", total, 0, **params)
    steps = list(range(total + 1))
    fig = Figure(figsize=(6, 3.5))
    FigureCanvasAgg(fig)  # Agg canvas without touching pyplot's global backend
    ax = fig.add_subplot()
    for name, fn in SCHEDULES.items():
        ax.plot(steps, [fn(s, total, **full) for s in steps], label=name)
    ax.set_xlabel("step")
    ax.set_ylabel("alpha")
    ax.set_title(", ".join(f"{k}={v}" for k, v in full.items()))
    ax.legend()
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path
