"""Every table of a run's report, aggregated from its rows: leaderboard, thesis, literature and issues.

Every number is a mean over seeds of the rows with status "ok"; failed and stopped
trials, and grid cells with no row at all, are listed apart and never averaged in. The
grid is the one in the run's space.json, else the cross product of what the rows show.

- leaderboard: per (model, bits, PTQ method), the FP accuracy, the plain arm's quantized
  accuracy (the baseline) and each arm variant's q_acc and improvement (its q_acc minus the
  plain arm's q_acc of the same seed, so n counts only seeds whose baseline is ok); with the
  plain arm alone (`arnq quantize`), q_acc and its drop instead;
- best combination: per (model, bits), the best PTQ method after plain fine-tuning against
  the best (arm variant × PTQ method) combination of the other arms, their paired difference
  over seeds and a paired t-test;
- thesis view: each arm variant's improvement averaged over (model, bits, PTQ) cells, per
  bits, per PTQ method, per model (when there are several) and overall (the run's
  counterpart of the thesis's average gain);
- literature view: per model, the FP accuracy and the plain arm's q_acc with its change from
  FP per PTQ method and bits (the layout of the FQ-ViT / PTQ4ViT / RepQ-ViT READMEs);
- fine-tune view: each variant's ft_acc and max/σ after fine-tuning (empty without a fine-tune);
- issues: the failed, stopped and missing cells.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import pandas as pd

from harness.report.axes import PLAIN, Axes, Cell, Variant, axes_from_rows, axes_from_space, params_text
from harness.report.provenance import STATUS_ORDER, distinct, provenance
from harness.report.stats import add_baselines, mean, mean_std, normalize, stats

log = logging.getLogger(__name__)

METRICS = ("fp_acc", "ft_acc", "q_acc", "improvement")  # the long leaderboard's metrics
DISPLAY_METRICS = ("drop", "ft_change", "q_change", "max_over_sigma_after")  # also collected per cell, for the display tables only
ALL = "all"  # the bits or ptq of a thesis-view average over every value
BEST_MARK = "★"
BEST_RULE = (f"{BEST_MARK} marks, in each row, the arm variant with the highest mean improvement, "
             "provided that mean is above 0; variants tied at two decimals are all marked.")
Values = Mapping[Cell, Mapping[str, list[float]]]  # the ok values of each metric per cell, over seeds


@dataclass(frozen=True)
class Report:
    """Every table of a run's report: numeric long tables (CSV, W&B, plots) and display tables (Markdown, HTML)."""

    name: str
    provenance: dict[str, str]
    axes: Axes
    leaderboard: pd.DataFrame  # one row per (model, bits, ptq, arm variant, metric): mean, std, n, best
    thesis: pd.DataFrame  # one row per (arm variant, model or 'all', bits or 'all', ptq or 'all'): mean, std, n over cells
    best: pd.DataFrame  # one row per (model, bits): the best plain + PTQ against the best arm + PTQ, paired
    issues: pd.DataFrame  # one row per failed, stopped or missing (model, bits, ptq, arm variant, seed)
    trials: pd.DataFrame  # one row per trial (the store's rows) with baseline_q_acc, improvement and drop joined in
    views: dict[str, pd.DataFrame]  # display tables of strings: leaderboard, thesis, literature, finetune
    schedules: tuple[tuple[str, dict[str, Any], tuple[str, ...]], ...]  # (schedule, params, variants using it)
    grid_source: str
    grid_cells: int

    @property
    def compares_arms(self) -> bool:
        """Whether the run has arm variants besides plain (else there is no improvement to show)."""
        return self.axes.variants != (PLAIN,)


def build_report(
    rows: Iterable[Mapping[str, Any]],
    space: Mapping[str, Any] | None = None,
    *,
    name: str = "run",
    now: datetime | None = None,
    hardware: str | None = None,
    rows_written: datetime | None = None,
    ptqs: Sequence[str] | None = None,
) -> Report:
    """Every table of the report from a run's rows (and its space.json, if any); `name` is used without one.

    `ptqs` keeps only those PTQ methods' rows and grid cells (e.g. a thesis view over some methods)."""
    rows = [normalize(r) for r in rows]
    if not rows:
        raise ValueError("no rows to report; run the sweep first")
    grid_axes, grid_source = _grid_axes(rows, space)
    name = (space or {}).get("name") or distinct(rows, "space") or name
    return _assemble(rows, space, grid_axes.extended(axes_from_rows(rows)), grid_axes.grid(), grid_source, name,
                     now=now, hardware=hardware, rows_written=rows_written, ptqs=ptqs)


def build_merged_report(
    runs: Sequence[tuple[str, Sequence[Mapping[str, Any]], Mapping[str, Any] | None]],
    *,
    name: str | None = None,
    now: datetime | None = None,
    hardware: str | None = None,
    rows_written: datetime | None = None,
    ptqs: Sequence[str] | None = None,
) -> Report:
    """One report over several runs, each given as (run name, rows, space.json or None).

    Each arm is compared with the plain rows of its own run: every (model, bits, PTQ method) must come
    from one run (ValueError naming both otherwise). The grid is the union of the runs' grids, so cells
    one run never planned are not reported missing. Trials carry their run's name in a `run` column;
    runs whose plain fine-tunes of a model used different settings are named in the provenance, since
    the best-combination table pairs seeds across runs. `ptqs` as in `build_report`.
    """
    owner: dict[tuple[str, str, str], str] = {}
    rows, axes, grid, sources = [], None, set(), []
    for run, run_rows, space in runs:
        run_rows = [{**normalize(r), "run": run} for r in run_rows]
        if not run_rows:
            raise ValueError(f"{run}: no rows to report; run `arnq sweep`, `arnq grid` or `arnq quantize` into it first")
        for cell in dict.fromkeys((r["model"], r["bits"], r["ptq"]) for r in run_rows):
            other = owner.setdefault(cell, run)
            if other != run:
                raise ValueError(
                    f"{'/'.join(cell)} has rows in both {other} and {run}: a report over several runs compares each "
                    "arm with the plain fine-tunes of its own run, so each (model, bits, PTQ method) must come from one "
                    "run; report those runs separately, or leave one of them out")
        run_axes, source = _grid_axes(run_rows, space)
        axes = run_axes if axes is None else axes.extended(run_axes)
        grid |= run_axes.grid()
        sources.append(f"{run}: {source}")
        rows += run_rows
    if axes is None:
        raise ValueError("no runs to report")
    name = name or " + ".join(run for run, _, _ in runs)
    report = _assemble(rows, None, axes.extended(axes_from_rows(rows)), grid, "the union of the runs' grids ("
                       + "; ".join(sources) + ")", name, now=now, hardware=hardware, rows_written=rows_written,
                       ptqs=ptqs)
    budgets = _plain_budgets(rows)
    if budgets:
        report.provenance["plain_finetune_settings"] = budgets
    return report


def _plain_budgets(rows: Sequence[Mapping[str, Any]]) -> str:
    """'' when every run fine-tunes each model's plain arm with the same settings, else what differs, per model."""
    settings: dict[str, dict[str, set[str]]] = {}
    for row in rows:
        if row["arm"] == "plain" and row.get("config"):
            finetune = json.loads(row["config"]).get("finetune")
            if finetune is not None:
                settings.setdefault(row["model"], {}).setdefault(json.dumps(finetune, sort_keys=True), set()).add(row["run"])
    notes = []
    for model, by_setting in settings.items():
        if len(by_setting) > 1:
            parts = [f"{', '.join(sorted(runs))}: {text}" for text, runs in by_setting.items()]
            notes.append(f"{model} differs across runs ({' | '.join(parts)})")
    if notes:
        log.warning("the runs fine-tune the plain arm differently: %s", "; ".join(notes))
    return "; ".join(notes) + ("; the best-combination table pairs seeds across these runs" if notes else "")


def _grid_axes(rows: Sequence[Mapping[str, Any]], space: Mapping[str, Any] | None) -> tuple[Axes, str]:
    """The grid's axes: the space.json's when it gives one, else the cross product of what the rows show."""
    seen = axes_from_rows(rows)
    if space is not None:
        try:
            return axes_from_space(space, seen.variants), "space.json"
        except (KeyError, IndexError, TypeError, ValueError) as err:
            log.warning("space.json does not give a grid (%s); the grid is what the rows show", err)
    return seen, "the cross product of the models, bits, PTQ methods, arm variants and seeds the rows show"


def _assemble(
    rows: list[dict[str, Any]], space: Mapping[str, Any] | None, axes: Axes, grid: set, grid_source: str, name: str,
    *, now: datetime | None, hardware: str | None, rows_written: datetime | None, ptqs: Sequence[str] | None = None,
) -> Report:
    if ptqs is not None:
        absent = [p for p in ptqs if p not in axes.ptqs]
        if absent:
            raise ValueError(f"PTQ methods {absent}: no rows or grid cells of them in {name}; "
                             f"these have some: {', '.join(axes.ptqs)}")
        rows = [r for r in rows if r["ptq"] in ptqs]
        axes = replace(axes, ptqs=tuple(p for p in axes.ptqs if p in ptqs))
        grid = {cell for cell in grid if cell[2] in ptqs}
    trials = add_baselines(rows)
    values = _values(trials, axes)
    best = _best_variants(values)
    issues = _issues(rows, axes, grid)
    thesis, thesis_view = _thesis(values, axes)
    best_table, best_view = _best_combination(trials, axes)
    return Report(
        name=name, axes=axes, leaderboard=_leaderboard(values, best, axes), thesis=thesis, best=best_table, issues=issues,
        trials=trials.drop(columns=["diagnostics"], errors="ignore"),
        provenance=provenance(rows, space, name, issues, now=now, hardware=hardware, rows_written=rows_written),
        grid_source=grid_source, grid_cells=len(grid), schedules=_noise_schedules(rows, axes),
        views={"leaderboard": _leaderboard_view(values, best, axes), "best": best_view, "thesis": thesis_view,
               "literature": _literature_view(values, axes), "finetune": _finetune_view(values, axes),
               "variants": _variants_view(axes)},
    )


def _values(trials: pd.DataFrame, axes: Axes) -> dict[Cell, dict[str, list[float]]]:
    """The ok trials' values of every metric per cell, in report order."""
    ok = trials[trials["status"] == "ok"]
    values: dict[Cell, dict[str, list[float]]] = {}
    for (model, bits, ptq, arm, params), group in ok.groupby(["model", "bits", "ptq", "arm", "arm_params"]):
        values[(model, bits, ptq, (arm, params))] = {m: [float(v) for v in group[m].dropna()]
                                                     for m in (*METRICS, *DISPLAY_METRICS) if m in group}
    return dict(sorted(values.items(), key=lambda kv: axes.sort_key(*kv[0])))


def _best_variants(values: Values) -> set[Cell]:
    """The marked variants of each (model, bits, ptq): see BEST_RULE."""
    means: dict[tuple[str, str, str], dict[Variant, float]] = {}
    for (model, bits, ptq, variant), metrics in values.items():
        if variant != PLAIN and metrics["improvement"]:
            means.setdefault((model, bits, ptq), {})[variant] = round(mean(metrics["improvement"]), 2)
    marked = set()
    for cell, by_variant in means.items():
        top = max(by_variant.values())
        if top > 0:
            marked |= {(*cell, v) for v, m in by_variant.items() if m == top}
    return marked


def _leaderboard(values: Values, best: set[Cell], axes: Axes) -> pd.DataFrame:
    records = []
    for (model, bits, ptq, (arm, params)), metrics in values.items():
        for metric in METRICS:
            if metrics[metric]:
                m, std, n = stats(metrics[metric])
                records.append({"model": model, "bits": bits, "ptq": ptq, "arm": arm, "arm_params": params,
                                "variant": axes.label((arm, params)), "metric": metric, "mean": round(m, 4),
                                "std": round(std, 4), "n": n, "best": (model, bits, ptq, (arm, params)) in best})
    return pd.DataFrame(records, columns=["model", "bits", "ptq", "arm", "arm_params", "variant", "metric", "mean",
                                          "std", "n", "best"])


def _fp(values: Values, model: str, bits: str, ptq: str) -> str:
    """The mean FP accuracy of every variant's rows in a (model, bits, ptq) cell, or '—'."""
    fp = [v for key, metrics in values.items() if key[:3] == (model, bits, ptq) for v in metrics["fp_acc"]]
    return f"{mean(fp):.2f}" if fp else "—"


def _leaderboard_view(values: Values, best: set[Cell], axes: Axes) -> pd.DataFrame:
    """Wide: one row per (model, bits, ptq), a q_acc and an improvement (Δ) column per arm variant."""
    if axes.variants == (PLAIN,):
        return _plain_view(values)
    records = []
    for model, bits, ptq in dict.fromkeys(key[:3] for key in values):
        record = {"model": model, "bits": bits, "ptq": ptq, "FP (before fine-tuning)": _fp(values, model, bits, ptq)}
        for variant in axes.variants:
            metrics = values.get((model, bits, ptq, variant), {})
            label = axes.label(variant)
            if variant == PLAIN:
                record["plain q_acc (baseline)"] = mean_std(metrics.get("q_acc", []))
                continue
            mark = f" {BEST_MARK}" if (model, bits, ptq, variant) in best else ""
            record[f"{label} q_acc"] = mean_std(metrics.get("q_acc", []))
            record[f"{label} Δ"] = mean_std(metrics.get("improvement", [])) + mark
        records.append(record)
    return pd.DataFrame(records)


def _plain_view(values: Values) -> pd.DataFrame:
    """The leaderboard of a run with the plain arm only: one row per (model, bits, ptq), q_acc and its drop."""
    return pd.DataFrame([{"model": model, "bits": bits, "ptq": ptq, "FP": _fp(values, model, bits, ptq),
                          "q_acc": mean_std(metrics["q_acc"]), "drop": mean_std(metrics["drop"])}
                         for (model, bits, ptq, _), metrics in values.items()])


def _thesis(values: Values, axes: Axes) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Each variant's per-cell mean improvement averaged per bits, per ptq, per (bits, ptq), per model (when
    there are several) and overall: the long table, and the view with a column per model, bits, PTQ method
    and 'all'."""
    cell_means = [(variant, model, bits, ptq, mean(m["improvement"]))
                  for (model, bits, ptq, variant), m in values.items() if variant != PLAIN and m["improvement"]]
    models = axes.models if len(axes.models) > 1 else ()
    shown = ([(m, ALL, ALL) for m in models] + [(ALL, b, ALL) for b in axes.bits]
             + [(ALL, ALL, q) for q in axes.ptqs] + [(ALL, ALL, ALL)])
    groups = shown[:-1] + [(ALL, b, q) for b in axes.bits for q in axes.ptqs] + [(ALL, ALL, ALL)]
    records, view = [], []
    for variant in axes.variants:
        label = axes.label(variant)
        row = {"arm variant": label}
        for model, bits, ptq in groups:
            means = [v for var, mo, b, q, v in cell_means
                     if var == variant and model in (mo, ALL) and bits in (b, ALL) and ptq in (q, ALL)]
            if means:
                m, std, n = stats(means)
                records.append({"arm": variant[0], "arm_params": variant[1], "variant": label, "model": model,
                                "bits": bits, "ptq": ptq, "mean": round(m, 4), "std": round(std, 4), "n": n})
            if (model, bits, ptq) in shown:
                column = next((v for v in (model, bits, ptq) if v != ALL), ALL)
                row[column] = mean_std(means)
        if any(v == variant for v, *_ in cell_means):
            view.append(row)
    columns = ["arm", "arm_params", "variant", "model", "bits", "ptq", "mean", "std", "n"]
    return pd.DataFrame(records, columns=columns), pd.DataFrame(view)


SIGNIFICANCE = 0.05  # two-sided paired t-test level of the best-combination table


def _best_combination(trials: pd.DataFrame, axes: Axes) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per (model, bits): the plain + PTQ with the highest mean q_acc, the (arm variant, PTQ) combination
    other than plain with the highest mean q_acc, and their per-seed difference over the seeds both have
    (mean, std, two-sided paired t-test)."""
    ok = trials[trials["status"] == "ok"] if not trials.empty else trials
    records, view = [], []
    if ok.empty or PLAIN not in axes.variants or len(axes.variants) < 2:
        return pd.DataFrame(records), pd.DataFrame(view)
    cells = dict.fromkeys(zip(ok["model"], ok["bits"], strict=True))
    for model, bits in sorted(cells, key=lambda c: axes.sort_key(c[0], c[1], axes.ptqs[0], PLAIN)):
        group = ok[(ok["model"] == model) & (ok["bits"] == bits)]
        combos: dict[tuple[str, Variant], dict[int, float]] = {}
        for row in group.itertuples():
            if not math.isnan(row.q_acc):
                combos.setdefault((row.ptq, (row.arm, row.arm_params)), {})[row.seed] = float(row.q_acc)

        def score(key: tuple[str, Variant], combos: dict = combos) -> float:
            return mean(list(combos[key].values()))

        plain = [k for k in combos if k[1] == PLAIN]
        armed = [k for k in combos if k[1] != PLAIN]
        if not plain or not armed:
            continue
        base, top = max(plain, key=score), max(armed, key=score)
        seeds = sorted(set(combos[top]) & set(combos[base]))
        diffs = [round(combos[top][s] - combos[base][s], 4) for s in seeds]
        d_mean, d_std, n = stats(diffs) if diffs else (math.nan, math.nan, 0)
        p_value = _paired_p(diffs)
        if n < 2:
            verdict = "fewer than two paired seeds: no test"
        elif p_value < SIGNIFICANCE:
            verdict = f"{'better' if d_mean > 0 else 'worse'} (p < {SIGNIFICANCE})"
        else:
            verdict = "within seed noise"
        top_label = f"{axes.label(top[1])} + {top[0]}"
        base_std, top_std = stats(list(combos[base].values()))[1], stats(list(combos[top].values()))[1]
        records.append({"model": model, "bits": bits, "best_plain_ptq": base[0],
                        "best_plain_q_acc": round(score(base), 4), "best_plain_std": round(base_std, 4),
                        "best_plain_n": len(combos[base]), "best_arm_combination": top_label,
                        "best_arm_q_acc": round(score(top), 4), "best_arm_std": round(top_std, 4),
                        "best_arm_n": len(combos[top]), "paired_diff": round(d_mean, 4),
                        "paired_std": round(d_std, 4), "n": n, "p_value": round(p_value, 4), "verdict": verdict})
        view.append({"model": model, "bits": bits,
                     "best PTQ after plain fine-tuning": f"{base[0]}: {mean_std(list(combos[base].values()))}",
                     "best fine-tuning arm + PTQ": f"{top_label}: {mean_std(list(combos[top].values()))}",
                     "paired Δ": mean_std(diffs), "p": "—" if math.isnan(p_value) else f"{p_value:.3f}",
                     "verdict": verdict})
    return pd.DataFrame(records), pd.DataFrame(view)


def answer_lines(report: Report) -> list[str]:
    """The run's answer in words, one line per (model, bits) of the best-combination table: the best arm x PTQ
    combination against the best PTQ after plain fine-tuning, their paired difference and the test's verdict."""
    lines = []
    for r in report.best.to_dict("records"):
        test = "" if math.isnan(r["p_value"]) else f" (two-sided paired t-test p = {r['p_value']:.3f})"
        lines.append(
            f"{r['model']} {r['bits']}: {r['best_arm_combination']} {r['best_arm_q_acc']:.2f} ± {r['best_arm_std']:.2f} "
            f"against {r['best_plain_ptq']} after plain fine-tuning {r['best_plain_q_acc']:.2f} ± "
            f"{r['best_plain_std']:.2f}; paired Δ {_signed(r['paired_diff']) if r['n'] else '—'} ± "
            f"{r['paired_std']:.2f} over {r['n']} seed{'s' if r['n'] != 1 else ''}{test}: {r['verdict']}")
    return lines


def _paired_p(diffs: Sequence[float]) -> float:
    """Two-sided p-value of a paired t-test that the mean difference is 0 (NaN below two pairs)."""
    if len(diffs) < 2:
        return math.nan
    m, std, n = stats(diffs)
    if std == 0:
        return 0.0 if m != 0 else 1.0
    from scipy.stats import t as student_t

    return float(2 * student_t.sf(abs(m / (std / math.sqrt(n))), n - 1))


def _signed(delta: float) -> str:
    """'+0.12' or '−0.91' (a true minus sign, as the PTQ papers print it)."""
    return f"{round(delta, 2) + 0.0:+.2f}".replace("-", "\u2212")


def _literature_view(values: Values, axes: Axes) -> pd.DataFrame:
    """Rows = model, columns = PTQ method × bits, cells 'plain q_acc (change from FP)'."""
    records = []
    for model in dict.fromkeys(key[0] for key in values):
        fp_values = [v for key, m in values.items() if key[0] == model for v in m["fp_acc"]]
        fp = mean(fp_values) if fp_values else math.nan
        record = {"model": model, "FP": f"{fp:.2f}" if fp_values else "—"}
        for ptq, bits in itertools.product(axes.ptqs, axes.bits):
            plain = values.get((model, bits, ptq, PLAIN), {}).get("q_acc", [])
            q_acc = mean(plain) if plain else math.nan
            record[f"{ptq} {bits}"] = "—" if not plain else f"{q_acc:.2f}" + (
                f" ({_signed(q_acc - fp)})" if fp_values else "")
        records.append(record)
    return pd.DataFrame(records)


def _finetune_view(values: Values, axes: Axes) -> pd.DataFrame:
    """Wide: per (model, bits, ptq), each variant's ft_acc and max/σ after fine-tuning; empty without a fine-tune."""
    if all(m["ft_acc"] == m["fp_acc"] for m in values.values()):
        return pd.DataFrame()
    diagnostics = any(m.get("max_over_sigma_after") for m in values.values())
    records = []
    for model, bits, ptq in dict.fromkeys(key[:3] for key in values):
        record = {"model": model, "bits": bits, "ptq": ptq, "FP (before fine-tuning)": _fp(values, model, bits, ptq)}
        for variant in axes.variants:
            metrics = values.get((model, bits, ptq, variant), {})
            label = axes.label(variant)
            record[f"{label} ft_acc"] = mean_std(metrics.get("ft_acc", []))
            record[f"{label} ft − FP"] = mean_std(metrics.get("ft_change", []))
            record[f"{label} q − ft"] = mean_std(metrics.get("q_change", []))
            if diagnostics:
                record[f"{label} max/σ"] = mean_std(metrics.get("max_over_sigma_after", []))
        records.append(record)
    return pd.DataFrame(records)


def _variants_view(axes: Axes) -> pd.DataFrame:
    """The legend: each arm variant's label, arm and the parameters it sets (the rest are the arm's defaults)."""
    records = []
    for arm, params in axes.variants:
        text = params_text(json.loads(params), ", ")
        records.append({"label": axes.label((arm, params)), "arm": arm, "parameters": text or "the arm's defaults"})
    return pd.DataFrame(records, columns=["label", "arm", "parameters"])


def _issue_detail(row: Mapping[str, Any]) -> str:
    if row["status"] != "stopped":
        return str(row.get("error") or "")
    detail = f"stopped at epoch {row.get('stopped_at_epoch')}"
    if row.get("q_val_acc") is not None:
        detail += f", q_val_acc {row['q_val_acc']}"
    return detail


def _issues(rows: Sequence[Mapping[str, Any]], axes: Axes, grid: set) -> pd.DataFrame:
    """Failed, stopped (and any other non-ok) rows, then grid cells with no row at all."""
    records = [{"status": row["status"], "model": row["model"], "bits": row["bits"], "ptq": row["ptq"],
                "variant": (row["arm"], row["arm_params"]), "seed": row["seed"], "detail": _issue_detail(row)}
               for row in rows if row["status"] != "ok"]
    present = {(r["model"], r["bits"], r["ptq"], (r["arm"], r["arm_params"]), r["seed"]) for r in rows}
    for model, bits, ptq, variant, seed in grid - present:
        records.append({"status": "missing", "model": model, "bits": bits, "ptq": ptq, "variant": variant,
                        "seed": seed, "detail": "no row"})

    def rank(record: Mapping[str, Any]) -> tuple:
        status = record["status"]
        order = STATUS_ORDER.index(status) if status in STATUS_ORDER else len(STATUS_ORDER) + (status == "missing")
        key = axes.sort_key(record["model"], record["bits"], record["ptq"], record["variant"], record["seed"])
        return (order, key, status)

    records.sort(key=rank)
    for record in records:
        record["variant"] = axes.label(record["variant"])
    return pd.DataFrame(records, columns=["status", "model", "bits", "ptq", "variant", "seed", "detail"])


def _arm_knobs(row: Mapping[str, Any]) -> dict[str, Any]:
    """A row's resolved arm knobs: its config's arm (rows before typed trials: `arm_config`), else arm_params."""
    if not row.get("config"):
        return json.loads(row["arm_params"])
    config = json.loads(row["config"])
    return config["arm"] if isinstance(config.get("arm"), dict) else config.get("arm_config", {})


def _noise_schedules(rows: Sequence[Mapping[str, Any]], axes: Axes) -> tuple[tuple[str, dict[str, Any], tuple[str, ...]], ...]:
    """The distinct noise schedules of the ok rows (the config's resolved arm, else arm_params with the defaults)."""
    from arnq.arms.schedules import DEFAULT_PARAMS

    used: dict[tuple, dict[str, None]] = {}
    for row in rows:
        if row["status"] != "ok":
            continue
        config = _arm_knobs(row)
        if "schedule" not in config:
            continue
        params = tuple((k, config.get(k, default)) for k, default in DEFAULT_PARAMS.items())
        used.setdefault((config["schedule"], params), {})[axes.label((row["arm"], row["arm_params"]))] = None
    return tuple((schedule, dict(params), tuple(variants)) for (schedule, params), variants in used.items())
