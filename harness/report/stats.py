"""Rows with their baselines joined in, and the mean ± std over seeds every table prints."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pandas as pd

from harness.report.axes import canonical

CELL = ("model", "bits", "ptq", "seed")  # a plain row with the same cell is an arm's baseline


def normalize(row: Mapping[str, Any]) -> dict[str, Any]:
    """A row with canonical arm_params and NaN (not None, not absent) for the accuracies it lacks."""
    out = {**row, "arm_params": canonical(row.get("arm_params")), "status": row.get("status", "ok")}
    for key in ("fp_acc", "ft_acc", "q_acc"):
        if out.get(key) is None:
            out[key] = math.nan
    return out


def add_baselines(rows: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """Rows with baseline_q_acc (the plain arm's q_acc in the same cell and seed), improvement and drop."""
    df = pd.DataFrame(list(rows))
    if df.empty:
        return df
    ok = df[df["status"] == "ok"]
    plain = ok[ok["arm"] == "plain"].drop_duplicates(list(CELL)).set_index(list(CELL))["q_acc"]
    keys = list(zip(*(df[c] for c in CELL), strict=True))
    df["baseline_q_acc"] = [plain.get(k, math.nan) for k in keys]
    df["improvement"] = (df["q_acc"] - df["baseline_q_acc"]).round(2)
    df["drop"] = (df["ft_acc"] - df["q_acc"]).round(2)
    df["ft_change"] = (df["ft_acc"] - df["fp_acc"]).round(2)  # what the fine-tune itself cost or gained, in FP
    df["q_change"] = (df["q_acc"] - df["ft_acc"]).round(2)  # what quantizing the fine-tuned model cost
    if "diagnostics" in df:
        diag = [json.loads(d) if isinstance(d, str) else {} for d in df["diagnostics"]]
        for when in ("before", "after"):
            df[f"max_over_sigma_{when}"] = [
                round(d.get(when, {}).get("linear_in_max_over_sigma_mean", math.nan), 2) for d in diag
            ]
    return df


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def stats(values: Sequence[float]) -> tuple[float, float, int]:
    """(mean, sample std, n), the numbers `mean_std` prints."""
    m = mean(values)
    std = math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
    return m, std, len(values)


def mean_std(values: Sequence[float]) -> str:
    """'m ± s (n=k)' with the sample std over seeds; 'm (n=1)' for one value, whose sample std is
    undefined; '—' when empty."""
    vals = [v for v in values if v is not None and not math.isnan(v)]
    if not vals:
        return "—"
    m, std, n = stats(vals)
    return f"{m:.2f} (n=1)" if n == 1 else f"{m:.2f} ± {std:.2f} (n={n})"

