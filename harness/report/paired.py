"""Paired-by-seed comparisons of a results folder's rows, as its analysis script prints them.

Every arm of a sweep starts each seed from the same FP checkpoint, calibration subset and data
order, so two cells of one model and bit-width pair by seed. A cell's values come in the order of
the seeds asked for; `paired_diff` prints the per-seed differences, their mean ± sample std and the
two-sided paired t-test's p.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from scipy import stats


def folder_rows(folder: Path) -> list[dict[str, Any]]:
    """Every row of `folder`/rows.jsonl, in file order (a sweep's rows, failed ones included)."""
    path = Path(folder) / "rows.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def cell_values(rows: Sequence[dict[str, Any]], seeds: Sequence[int], key: str = "q_acc",
                **match: Any) -> list[float]:
    """`key` of the ok rows whose fields equal `match` (e.g. `ptq="repq_vit", arm="plain"`), one per seed
    of `seeds`, in that order (the last such row of a seed where a folder holds more than one).

    Raises KeyError naming the cell and the seeds it lacks.
    """
    by_seed = {r["seed"]: r[key] for r in rows
               if r.get("status") == "ok" and all(r.get(k) == v for k, v in match.items())}
    missing = [s for s in seeds if s not in by_seed]
    if missing:
        raise KeyError(f"no ok row with {match} for seed(s) {missing}: is the sweep finished, the cell spelled "
                       "as its rows spell it (arm_params as a JSON string)?")
    return [by_seed[s] for s in seeds]


def mean_std(values: Sequence[float]) -> str:
    """'m ± s' (sample std) to two decimals; 'm' for one value."""
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"


def differences(a: Sequence[float], b: Sequence[float]) -> list[float]:
    """a - b per seed (the two lists in the same seed order)."""
    return [x - y for x, y in zip(a, b, strict=True)]


def paired_p(a: Sequence[float], b: Sequence[float]) -> float:
    """The two-sided paired t-test's p of a against b."""
    return float(stats.ttest_rel(a, b).pvalue)


def paired_diff(a: Sequence[float], b: Sequence[float], sep: str = " | ") -> str:
    """'+m ± s (+d0, +d1, ...)' of a - b per seed, then `sep` and the paired t-test's p to three decimals
    (a Markdown cell boundary by default; ', p ' reads as prose)."""
    d = differences(a, b)
    return (f"{statistics.mean(d):+.2f} ± {statistics.stdev(d):.2f} ({', '.join(f'{v:+.2f}' for v in d)})"
            f"{sep}{paired_p(a, b):.3f}")


def two_std_verdict(d: Sequence[float], ahead: str, behind: str, neutral: str = "within noise") -> str:
    """`ahead` where every paired difference is positive and their mean exceeds twice their sample std,
    `behind` where every one is negative by that margin, else `neutral`."""
    mean, std = statistics.mean(d), statistics.stdev(d)
    if all(v > 0 for v in d) and mean > 2 * std:
        return ahead
    if all(v < 0 for v in d) and mean < -2 * std:
        return behind
    return neutral


def mean_gain(rows: Sequence[dict[str, Any]], seeds: Sequence[int], arm: str = "arnq", baseline: str = "plain",
              arm_match: dict[str, Any] | None = None, **match: Any) -> float:
    """Mean q_acc of `arm` minus that of `baseline` over `seeds`, in the cell `match` names (the thesis view's
    per-method improvement); `arm_match` overrides fields for the arm's side only (e.g. its arm_params, where
    the baseline's are "{}")."""
    return (statistics.mean(cell_values(rows, seeds, arm=arm, **{**match, **(arm_match or {})}))
            - statistics.mean(cell_values(rows, seeds, arm=baseline, **match)))


def arm_row(label: str, plain_ft: Sequence[float], plain_q: Sequence[float], arm_ft: Sequence[float],
            arm_q: Sequence[float], min_drop: float = 0.5) -> str:
    """One Markdown row '| label | plain ft | plain q | arm ft | arm q | arm − plain q (per seed) | p | plain drop |
    recovered |': the drop is plain's mean ft_acc − q_acc, the share of it the arm's mean gain recovers is left
    out (a dash) when the drop is under `min_drop` points."""
    drop = statistics.mean(plain_ft) - statistics.mean(plain_q)
    gain = statistics.mean(arm_q) - statistics.mean(plain_q)
    share = f"{100 * gain / drop:.0f} %" if drop >= min_drop else f"— (drop under {min_drop})"
    return (f"| {label} | {mean_std(plain_ft)} | {mean_std(plain_q)} | {mean_std(arm_ft)} | {mean_std(arm_q)} | "
            f"{paired_diff(arm_q, plain_q)} | {drop:.2f} | {share} |")


def spread_row(label: str, per_method: dict[str, float], itemise: bool = True) -> str:
    """One Markdown row '| label | mean ± std over methods | k of n positive |' of per-method gains (the thesis
    view), then '| name +g, ... |' when `itemise`."""
    values = list(per_method.values())
    row = f"| {label} | {statistics.mean(values):+.2f} ± {statistics.stdev(values):.2f} | " \
          f"{sum(g > 0 for g in values)} of {len(values)} |"
    return row + (f" {', '.join(f'{p} {g:+.2f}' for p, g in per_method.items())} |" if itemise else "")
