"""The leaderboard report of a run, built from its rows.jsonl: Markdown, CSV, HTML, plots and a W&B run.

Every number is a mean over seeds of the rows with status "ok"; failed and stopped
trials, and grid cells with no row at all, are listed apart and never averaged in. The
grid is the one in the run's space.json, else the cross product of what the rows show.

- leaderboard: per (model, bits, PTQ method), the FP accuracy, the plain arm's quantized
  accuracy (the baseline) and each arm variant's q_acc and improvement (its q_acc minus the
  plain arm's q_acc of the same seed, so n counts only seeds whose baseline is ok);
- thesis view: each arm variant's improvement averaged over (model, bits, PTQ) cells, per
  bits, per PTQ method and overall (the run's counterpart of the thesis's average gain);
- literature view: per model, the FP accuracy and the plain arm's q_acc with its change from
  FP per PTQ method and bits (the layout of the FQ-ViT / PTQ4ViT / RepQ-ViT READMEs);
- issues: the failed, stopped and missing cells.
"""

from __future__ import annotations

import base64
import html
import itertools
import json
import logging
import math
import os
import platform
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from harness.results import add_baselines, mean_std
from harness.store import ROWS, read_rows

log = logging.getLogger(__name__)

REPORT_DIR = "report"
FORMATS = ("md", "csv", "html")
METRICS = ("fp_acc", "ft_acc", "q_acc", "improvement")
ALL = "all"  # the bits or ptq of a thesis-view average over every value
BEST_MARK = "★"
BEST_RULE = (f"{BEST_MARK} marks, in each row, the arm variant with the highest mean improvement, "
             "provided that mean is above 0; variants tied at two decimals are all marked.")
STATUS_ORDER = ("failed", "stopped")  # then any other status, then missing
Variant = tuple[str, str]  # (arm, arm_params as canonical JSON)
PLAIN: Variant = ("plain", "{}")
Cell = tuple[str, str, str, Variant]  # (model, bits, ptq, variant)


def variant_label(arm: str, arm_params: str | Mapping[str, Any] = "{}") -> str:
    """'arnq[schedule=linear]': an arm and its grid point, as tables and plots name it."""
    params = json.loads(arm_params) if isinstance(arm_params, str) else dict(arm_params)
    if not params:
        return arm
    text = ",".join(f"{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in sorted(params.items()))
    return f"{arm}[{text}]"


def _canonical(arm_params: str | Mapping[str, Any] | None) -> str:
    params = json.loads(arm_params) if isinstance(arm_params, str) else dict(arm_params or {})
    return json.dumps(params, sort_keys=True)


@dataclass(frozen=True)
class Axes:
    """The values a run covers along each grid axis, in report order (plain first among variants)."""

    models: tuple[str, ...]
    bits: tuple[str, ...]
    ptqs: tuple[str, ...]
    variants: tuple[Variant, ...]
    seeds: tuple[int, ...]

    def grid(self) -> set[tuple[str, str, str, Variant, int]]:
        return set(itertools.product(self.models, self.bits, self.ptqs, self.variants, self.seeds))

    def extended(self, other: Axes) -> Axes:
        """These axes, then whatever `other` has that they lack."""
        def merge(a: tuple, b: tuple) -> tuple:
            return a + tuple(x for x in b if x not in a)

        return Axes(merge(self.models, other.models), merge(self.bits, other.bits), merge(self.ptqs, other.ptqs),
                    merge(self.variants, other.variants), merge(self.seeds, other.seeds))

    def sort_key(self, model: str, bits: str, ptq: str, variant: Variant, seed: int | None = None) -> tuple[int, ...]:
        pairs = ((self.models, model), (self.bits, bits), (self.ptqs, ptq), (self.variants, variant),
                 (self.seeds, seed))
        return tuple(axis.index(v) if v in axis else len(axis) for axis, v in pairs)


def _descending_bits(bits: Iterable[str]) -> list[str]:
    """Bit-widths from the widest down; names that do not parse keep their order at the end."""
    from arnq.ptq import parse_bits

    def key(text: str) -> tuple[int, int, int]:
        try:
            w_bits, a_bits = parse_bits(text)
        except ValueError:
            return (1, 0, 0)
        return (0, -w_bits, -a_bits)

    return sorted(dict.fromkeys(bits), key=key)


def axes_from_rows(rows: Sequence[Mapping[str, Any]]) -> Axes:
    """Axes of what the rows show: first-seen order, bits descending, seeds ascending."""
    variants = dict.fromkeys((r["arm"], r["arm_params"]) for r in rows)
    plain = [v for v in variants if v[0] == "plain"]
    return Axes(
        models=tuple(dict.fromkeys(r["model"] for r in rows)),
        bits=tuple(_descending_bits(r["bits"] for r in rows)),
        ptqs=tuple(dict.fromkeys(r["ptq"] for r in rows)),
        variants=tuple(plain + [v for v in variants if v[0] != "plain"]),
        seeds=tuple(sorted({r["seed"] for r in rows})),
    )


def axes_from_space(space: Mapping[str, Any]) -> Axes:
    """Axes of a space.json (a `Space.to_dict()`): its grid, plain first as the sweep runs it."""
    from harness.grid import expand_params

    variants = [(arm, _canonical(point)) for arm, params in space["arms"] for point in expand_params(arm, params)]
    variants = sorted(dict.fromkeys([PLAIN, *variants]), key=lambda v: v[0] != "plain")
    return Axes(models=tuple(space["models"]), bits=tuple(space["bits"]),
                ptqs=tuple(dict.fromkeys(name for name, _ in space["ptq"])), variants=tuple(variants),
                seeds=tuple(space["seeds"]))


@dataclass(frozen=True)
class Report:
    """Every table of a run's report: numeric long tables (CSV, W&B, plots) and display tables (Markdown, HTML)."""

    name: str
    provenance: dict[str, str]
    axes: Axes
    leaderboard: pd.DataFrame  # one row per (model, bits, ptq, arm variant, metric): mean, std, n, best
    thesis: pd.DataFrame  # one row per (arm variant, bits or 'all', ptq or 'all'): mean, std, n over cells
    issues: pd.DataFrame  # one row per failed, stopped or missing (model, bits, ptq, arm variant, seed)
    views: dict[str, pd.DataFrame]  # display tables of strings: leaderboard, thesis, literature
    schedules: tuple[tuple[str, dict[str, Any], tuple[str, ...]], ...]  # (schedule, params, variants using it)
    grid_source: str
    grid_cells: int


def _normalize(row: Mapping[str, Any]) -> dict[str, Any]:
    """A row with canonical arm_params and NaN (not None, not absent) for the accuracies it lacks."""
    out = {**row, "arm_params": _canonical(row.get("arm_params")), "status": row.get("status", "ok")}
    for key in ("fp_acc", "ft_acc", "q_acc"):
        if out.get(key) is None:
            out[key] = math.nan
    return out


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def _stats(values: Sequence[float]) -> tuple[float, float, int]:
    """(mean, sample std, n), the numbers `mean_std` prints."""
    mean = _mean(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
    return mean, std, len(values)


def build_report(
    rows: Iterable[Mapping[str, Any]],
    space: Mapping[str, Any] | None = None,
    *,
    name: str = "run",
    now: datetime | None = None,
    hardware: str | None = None,
    rows_written: datetime | None = None,
) -> Report:
    """Every table of the report from a run's rows (and its space.json, if any); `name` is used without one."""
    rows = [_normalize(r) for r in rows]
    if not rows:
        raise ValueError("no rows to report; run the sweep first")
    seen = axes_from_rows(rows)
    grid_axes, grid_source = seen, "the cross product of the models, bits, PTQ methods, arm variants and seeds the rows show"
    if space is not None:
        try:
            grid_axes, grid_source = axes_from_space(space), "space.json"
        except (KeyError, IndexError, TypeError, ValueError) as err:
            log.warning("space.json does not give a grid (%s); the grid is what the rows show", err)
    axes = grid_axes.extended(seen)

    df = add_baselines(rows)
    ok = df[df["status"] == "ok"]
    values: dict[Cell, dict[str, list[float]]] = {}
    for (model, bits, ptq, arm, params), group in ok.groupby(["model", "bits", "ptq", "arm", "arm_params"]):
        values[(model, bits, ptq, (arm, params))] = {m: [float(v) for v in group[m].dropna()] for m in METRICS}
    values = dict(sorted(values.items(), key=lambda kv: axes.sort_key(*kv[0])))
    best = _best_variants(values)

    grid = grid_axes.grid()
    issues = _issues(rows, axes, grid)
    name = (space or {}).get("name") or _distinct(rows, "space") or name
    provenance = _provenance(rows, space, name, issues, now=now, hardware=hardware, rows_written=rows_written)
    thesis, thesis_view = _thesis(values, axes)
    return Report(
        name=name, provenance=provenance, axes=axes, leaderboard=_leaderboard(values, best), thesis=thesis,
        issues=issues, grid_source=grid_source, grid_cells=len(grid), schedules=_noise_schedules(rows),
        views={"leaderboard": _leaderboard_view(values, best, axes), "thesis": thesis_view,
               "literature": _literature_view(values, axes)},
    )


def _best_variants(values: Mapping[Cell, Mapping[str, list[float]]]) -> set[Cell]:
    """The marked variants of each (model, bits, ptq): see BEST_RULE."""
    means: dict[tuple[str, str, str], dict[Variant, float]] = {}
    for (model, bits, ptq, variant), metrics in values.items():
        if variant != PLAIN and metrics["improvement"]:
            means.setdefault((model, bits, ptq), {})[variant] = round(_mean(metrics["improvement"]), 2)
    marked = set()
    for cell, by_variant in means.items():
        top = max(by_variant.values())
        if top > 0:
            marked |= {(*cell, v) for v, mean in by_variant.items() if mean == top}
    return marked


def _leaderboard(values: Mapping[Cell, Mapping[str, list[float]]], best: set[Cell]) -> pd.DataFrame:
    records = []
    for (model, bits, ptq, (arm, params)), metrics in values.items():
        for metric in METRICS:
            if metrics[metric]:
                mean, std, n = _stats(metrics[metric])
                records.append({"model": model, "bits": bits, "ptq": ptq, "arm": arm, "arm_params": params,
                                "variant": variant_label(arm, params), "metric": metric, "mean": round(mean, 4),
                                "std": round(std, 4), "n": n, "best": (model, bits, ptq, (arm, params)) in best})
    return pd.DataFrame(records, columns=["model", "bits", "ptq", "arm", "arm_params", "variant", "metric", "mean",
                                          "std", "n", "best"])


def _leaderboard_view(values: Mapping[Cell, Mapping[str, list[float]]], best: set[Cell], axes: Axes) -> pd.DataFrame:
    """Wide: one row per (model, bits, ptq), a q_acc and an improvement (Δ) column per arm variant."""
    cells = dict.fromkeys(key[:3] for key in values)
    records = []
    for model, bits, ptq in cells:
        fp = [v for variant in axes.variants for v in values.get((model, bits, ptq, variant), {}).get("fp_acc", [])]
        record = {"model": model, "bits": bits, "ptq": ptq, "FP": f"{_mean(fp):.2f}" if fp else "—"}
        for variant in axes.variants:
            metrics = values.get((model, bits, ptq, variant), {})
            label = variant_label(*variant)
            if variant == PLAIN:
                record["plain q_acc (baseline)"] = mean_std(metrics.get("q_acc", []))
                continue
            mark = f" {BEST_MARK}" if (model, bits, ptq, variant) in best else ""
            record[f"{label} q_acc"] = mean_std(metrics.get("q_acc", []))
            record[f"{label} Δ"] = mean_std(metrics.get("improvement", [])) + mark
        records.append(record)
    return pd.DataFrame(records)


def _thesis(values: Mapping[Cell, Mapping[str, list[float]]], axes: Axes) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Each variant's per-cell mean improvement averaged per bits, per ptq, per (bits, ptq) and overall:
    the long table, and the view with a column per bits, per PTQ method and 'all'."""
    cell_means = [(variant, bits, ptq, _mean(m["improvement"]))
                  for (_, bits, ptq, variant), m in values.items() if variant != PLAIN and m["improvement"]]
    shown = [(b, ALL) for b in axes.bits] + [(ALL, q) for q in axes.ptqs] + [(ALL, ALL)]
    groups = shown[:-1] + [(b, q) for b in axes.bits for q in axes.ptqs] + [(ALL, ALL)]
    records, view = [], []
    for variant in axes.variants:
        label = variant_label(*variant)
        row = {"arm variant": label}
        for bits, ptq in groups:
            means = [m for v, b, q, m in cell_means if v == variant and bits in (b, ALL) and ptq in (q, ALL)]
            if means:
                mean, std, n = _stats(means)
                records.append({"arm": variant[0], "arm_params": variant[1], "variant": label, "bits": bits,
                                "ptq": ptq, "mean": round(mean, 4), "std": round(std, 4), "n": n})
            if (bits, ptq) in shown:
                row[ALL if (bits, ptq) == (ALL, ALL) else bits if ptq == ALL else ptq] = mean_std(means)
        if any(v == variant for v, *_ in cell_means):
            view.append(row)
    columns = ["arm", "arm_params", "variant", "bits", "ptq", "mean", "std", "n"]
    return pd.DataFrame(records, columns=columns), pd.DataFrame(view)


def _signed(delta: float) -> str:
    """'+0.12' or '−0.91' (a true minus sign, as the PTQ papers print it)."""
    return f"{round(delta, 2) + 0.0:+.2f}".replace("-", "\u2212")


def _literature_view(values: Mapping[Cell, Mapping[str, list[float]]], axes: Axes) -> pd.DataFrame:
    """Rows = model, columns = PTQ method × bits, cells 'plain q_acc (change from FP)'."""
    records = []
    for model in dict.fromkeys(key[0] for key in values):
        fp_values = [v for key, m in values.items() if key[0] == model for v in m["fp_acc"]]
        fp = _mean(fp_values) if fp_values else math.nan
        record = {"model": model, "FP": f"{fp:.2f}" if fp_values else "—"}
        for ptq, bits in itertools.product(axes.ptqs, axes.bits):
            plain = values.get((model, bits, ptq, PLAIN), {}).get("q_acc", [])
            q_acc = _mean(plain) if plain else math.nan
            record[f"{ptq} {bits}"] = "—" if not plain else f"{q_acc:.2f}" + (
                f" ({_signed(q_acc - fp)})" if fp_values else "")
        records.append(record)
    return pd.DataFrame(records)


def _issues(rows: Sequence[Mapping[str, Any]], axes: Axes, grid: set) -> pd.DataFrame:
    """Failed, stopped (and any other non-ok) rows, then grid cells with no row at all."""
    records = []
    for row in rows:
        if row["status"] == "ok":
            continue
        if row["status"] == "stopped":
            detail = f"stopped at epoch {row.get('stopped_at_epoch')}"
            if row.get("q_val_acc") is not None:
                detail += f", q_val_acc {row['q_val_acc']}"
        else:
            detail = str(row.get("error") or "")
        records.append({"status": row["status"], "model": row["model"], "bits": row["bits"], "ptq": row["ptq"],
                        "variant": (row["arm"], row["arm_params"]), "seed": row["seed"], "detail": detail})
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
        record["variant"] = variant_label(*record["variant"])
    return pd.DataFrame(records, columns=["status", "model", "bits", "ptq", "variant", "seed", "detail"])


def _noise_schedules(rows: Sequence[Mapping[str, Any]]) -> tuple[tuple[str, dict[str, Any], tuple[str, ...]], ...]:
    """The distinct noise schedules of the ok rows (config.arm_config, else arm_params with the defaults)."""
    from arnq.arms.schedules import DEFAULT_PARAMS

    used: dict[tuple, dict[str, None]] = {}
    for row in rows:
        if row["status"] != "ok":
            continue
        config = json.loads(row["config"]).get("arm_config", {}) if row.get("config") else json.loads(row["arm_params"])
        if "schedule" not in config:
            continue
        params = tuple((k, config.get(k, default)) for k, default in DEFAULT_PARAMS.items())
        used.setdefault((config["schedule"], params), {})[variant_label(row["arm"], row["arm_params"])] = None
    return tuple((schedule, dict(params), tuple(variants)) for (schedule, params), variants in used.items())


def _distinct(rows: Sequence[Mapping[str, Any]], key: str) -> str:
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


def _utc(when: datetime) -> str:
    return when.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _provenance(
    rows: Sequence[Mapping[str, Any]], space: Mapping[str, Any] | None, name: str, issues: pd.DataFrame, *,
    now: datetime | None, hardware: str | None, rows_written: datetime | None,
) -> dict[str, str]:
    """What every table says about where its numbers come from."""
    versions = dict.fromkeys(r["versions"] for r in rows if r.get("versions"))
    statuses = pd.Series([r["status"] for r in rows]).value_counts()
    counts = ", ".join(f"{statuses[s]} {s}" for s in dict.fromkeys(("ok", *STATUS_ORDER, *statuses.index))
                       if s in statuses)
    seeds = sorted({r["seed"] for r in rows if r["status"] == "ok"})
    return {
        "space": name,
        "space_hash": (space or {}).get("source_hash") or _distinct(rows, "space_hash") or "unknown",
        "git_commit": _distinct(rows, "git_commit") or "unknown",
        "versions": " | ".join(", ".join(f"{k} {v}" for k, v in sorted(json.loads(text).items()))
                               for text in versions) or "unknown",
        "rows": f"{len(rows)} trials ({counts}); grid cells without a row: {int((issues['status'] == 'missing').sum())}",
        "newest_row": _utc(rows_written) if rows_written else "unknown",
        "report_date": _utc(now or datetime.now(timezone.utc)),
        "hardware": hardware or machine_description(),
        "trial_hosts": _distinct(rows, "host") or "not recorded",
        "seeds": f"{len(seeds)} ({', '.join(map(str, seeds))})",
    }


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)


def write_plots(report: Report, out_dir: Path) -> dict[str, Path]:
    """PNG plots (accuracy vs bits per model, improvement heatmap, noise schedules); caption -> path."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # lazy: Agg canvases, pyplot untouched
    from matplotlib.figure import Figure

    out_dir.mkdir(parents=True, exist_ok=True)
    plots: dict[str, Path] = {}

    def save(fig: Figure, caption: str, stem: str) -> None:
        path = out_dir / f"{stem}.png"
        fig.savefig(path, format="png", dpi=100)
        plots[caption] = path

    def new_figure(width: float, height: float) -> Figure:
        fig = Figure(figsize=(width, height), layout="constrained")
        FigureCanvasAgg(fig)
        return fig

    axes = report.axes
    board = report.leaderboard
    for model in dict.fromkeys(board["model"]):
        rows = board[board["model"] == model]
        ptqs = [q for q in axes.ptqs if q in set(rows["ptq"])]
        fig = new_figure(max(4.5 * len(ptqs), 7), 3.5 + 0.15 * len(axes.variants))
        panels = fig.subplots(1, len(ptqs), squeeze=False, sharey=True)[0]
        q_acc = rows[rows["metric"] == "q_acc"]
        for ax, ptq in zip(panels, ptqs, strict=True):
            for variant in axes.variants:
                points = q_acc[(q_acc["ptq"] == ptq) & (q_acc["arm"] == variant[0]) & (q_acc["arm_params"] == variant[1])]
                points = points.assign(x=points["bits"].map(axes.bits.index)).sort_values("x")
                if len(points):
                    ax.errorbar(points["x"], points["mean"], yerr=points["std"], marker="o", capsize=3,
                                label=variant_label(*variant))
            ax.axhline(rows.loc[rows["metric"] == "fp_acc", "mean"].mean(), color="black", linestyle="--",
                       linewidth=1, label="FP")
            ax.set_xticks(range(len(axes.bits)), axes.bits)
            ax.set_title(ptq)
            ax.set_xlabel("bits")
        panels[0].set_ylabel("quantized accuracy (%)")
        handles: dict[str, Any] = {}
        for ax in panels:
            for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
                handles.setdefault(label, handle)
        fig.legend(handles.values(), handles.keys(), loc="outside lower center", ncols=2, fontsize="small")
        fig.suptitle(f"{model}: accuracy vs bits (mean ± std over seeds)")
        save(fig, f"accuracy vs bits: {model}", f"accuracy_vs_bits_{_slug(model)}")

    cells = report.thesis[(report.thesis["bits"] != ALL) & (report.thesis["ptq"] != ALL)]
    if len(cells):
        bits_shown = [b for b in axes.bits if b in set(cells["bits"])]
        variants = list(dict.fromkeys(cells["variant"]))
        limit = max(cells["mean"].abs().max(), 0.01)
        fig = new_figure(1.2 + 1.6 * len(axes.ptqs) * len(bits_shown) + 2.5, 1.2 + 0.5 * len(variants))
        panels = fig.subplots(1, len(bits_shown), squeeze=False, sharey=True)[0]
        for ax, bits in zip(panels, bits_shown, strict=True):
            grid = [[math.nan] * len(axes.ptqs) for _ in variants]
            for r in cells[cells["bits"] == bits].itertuples():
                grid[variants.index(r.variant)][axes.ptqs.index(r.ptq)] = r.mean
            image = ax.imshow(grid, cmap="RdBu", vmin=-limit, vmax=limit, aspect="auto")
            for i, j in itertools.product(range(len(variants)), range(len(axes.ptqs))):
                if not math.isnan(grid[i][j]):
                    dark = abs(grid[i][j]) > 0.6 * limit
                    ax.text(j, i, f"{grid[i][j]:+.2f}", ha="center", va="center", fontsize="small",
                            color="white" if dark else "black")
            ax.set_xticks(range(len(axes.ptqs)), axes.ptqs)
            ax.set_yticks(range(len(variants)), variants)
            ax.set_title(bits)
        fig.colorbar(image, ax=list(panels), label="improvement over plain (pp)")
        fig.suptitle("mean improvement over the plain baseline, averaged over models")
        save(fig, "improvement heatmap", "improvement_heatmap")

    if report.schedules:
        from arnq.arms.schedules import SCHEDULE_PARAMS, schedule_value

        total = 1000
        fig = new_figure(7, 3.5 + 0.2 * len(report.schedules))
        ax = fig.add_subplot()
        for schedule, params, variants in report.schedules:
            try:
                alpha = [schedule_value(schedule, step, total, **params) for step in range(total + 1)]
            except ValueError as err:
                log.warning("noise schedule %s %s not plotted: %s", schedule, params, err)
                continue
            read = ", ".join(f"{k}={params[k]}" for k in SCHEDULE_PARAMS[schedule])
            ax.plot([s / total for s in range(total + 1)], alpha, label=f"{schedule}({read}): {', '.join(variants)}")
        ax.set_xlabel("training step / total steps")
        ax.set_ylabel("noise scale α(t)")
        fig.legend(loc="outside lower center", fontsize="x-small")
        ax.set_title("noise schedules of the noise arms")
        save(fig, "noise schedules", "noise_schedules")
    return plots


def _sections(report: Report) -> list[tuple[str, str, pd.DataFrame]]:
    """(title, caption, display table) of every table, in report order."""
    counts = report.issues["status"].value_counts()
    issues = ", ".join(f"{counts.get(s, 0)} {s}" for s in dict.fromkeys((*STATUS_ORDER, *counts.index, "missing")))
    return [
        ("Leaderboard",
         "Quantized accuracy q_acc (%) and its improvement Δ (percentage points) over the plain-fine-tune baseline "
         "of the same model, bits, PTQ method and seed, as mean ± sample std over seeds; n counts the seeds with "
         "status ok, and for Δ only those whose plain baseline is ok too. FP: the full-precision model. " + BEST_RULE,
         report.views["leaderboard"]),
        ("Thesis view",
         "Improvement over the plain baseline (percentage points) of each arm variant: its mean Δ per (model, bits, "
         "PTQ method) cell, averaged over the cells of each bit-width, of each PTQ method, and of all of them (all); "
         "± is the std across cells and n counts cells.",
         report.views["thesis"]),
        ("Literature view",
         "Per model, the FP accuracy and the plain arm's quantized accuracy (mean over seeds) with its change from FP "
         "in parentheses, per PTQ method and bit-width (the FQ-ViT / PTQ4ViT / RepQ-ViT README layout).",
         report.views["literature"]),
        ("Failed, stopped and missing cells",
         f"{issues} of the {report.grid_cells} (model, bits, PTQ method, arm variant, seed) cells of the grid; "
         f"none is averaged into the tables above. Grid: {report.grid_source}.",
         report.issues),
    ]


def render_markdown(report: Report, plots: Mapping[str, Path], report_dir: Path) -> str:
    """The report as one Markdown document: provenance header lines, every table, links to the plots."""
    from tabulate import tabulate

    lines = [f"# {report.name}: leaderboard report", ""]
    lines += [f"- {key}: {value}" for key, value in report.provenance.items()]
    for title, caption, table in _sections(report):
        lines += ["", f"## {title}", "", caption, ""]
        if table.empty:
            lines.append("None.")
        else:
            cells = [[str(v).replace("|", "\\|") for v in row] for row in table.itertuples(index=False)]
            lines.append(tabulate(cells, headers=list(table.columns), tablefmt="pipe", disable_numparse=True))
    if plots:
        lines += ["", "## Plots", ""]
        lines += [f"![{caption}]({path.relative_to(report_dir).as_posix()})" for caption, path in plots.items()]
    return "\n".join(lines) + "\n"


STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: left; white-space: nowrap; }
th { background: #f0f0f0; cursor: pointer; }
tbody tr:nth-child(even) { background: #fafafa; }
.provenance { font-size: 0.9em; color: #444; }
img { max-width: 100%; }
"""

SORT_JS = """
document.querySelectorAll("table.sortable th").forEach(th => th.addEventListener("click", () => {
  const body = th.closest("table").tBodies[0], col = th.cellIndex;
  const dir = th.dataset.dir = th.dataset.dir === "asc" ? "desc" : "asc";
  const key = tr => { const t = tr.cells[col].textContent.replace("\\u2212", "-"), x = parseFloat(t);
                      return isNaN(x) ? t : x; };
  const cmp = (a, b) => typeof a === typeof b ? (a < b ? -1 : a > b ? 1 : 0) : (typeof a === "number" ? -1 : 1);
  [...body.rows].sort((a, b) => (dir === "asc" ? 1 : -1) * cmp(key(a), key(b))).forEach(tr => body.appendChild(tr));
}));
"""


def _html_table(table: pd.DataFrame) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in table.columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>\n"
                   for row in table.itertuples(index=False))
    return f'<table class="sortable"><thead><tr>{head}</tr></thead>\n<tbody>\n{body}</tbody></table>'


def render_html(report: Report, plots: Mapping[str, Path]) -> str:
    """The report as one self-contained page: inline CSS and sort script, plots as base64 data URIs."""
    esc = html.escape
    parts = [f"<h1>{esc(report.name)}: leaderboard report</h1>", '<ul class="provenance">']
    parts += [f"<li><b>{esc(key)}</b>: {esc(value)}</li>" for key, value in report.provenance.items()]
    parts.append("</ul>")
    for title, caption, table in _sections(report):
        parts += [f"<h2>{esc(title)}</h2>", f"<p>{esc(caption)}</p>", "<p>None.</p>" if table.empty else _html_table(table)]
    if plots:
        parts.append("<h2>Plots</h2>")
    for caption, path in plots.items():
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        parts.append(f'<figure><img src="data:image/png;base64,{data}" alt="{esc(caption)}">'
                     f"<figcaption>{esc(caption)}</figcaption></figure>")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{esc(report.name)} report</title>'
            f"<style>{STYLE}</style></head>\n<body>\n" + "\n".join(parts) + f"\n<script>{SORT_JS}</script>\n</body></html>\n")


def log_wandb(report: Report, plots: Mapping[str, Path], run_dir: Path, settings: Mapping[str, Any] | None = None) -> Path:
    """One W&B run (job_type 'report') with every table, plot and the average improvements; returns its directory.

    Offline unless WANDB_MODE says otherwise; `settings` is the space's wandb block (project, entity).
    """
    import wandb

    settings = settings or {}
    wandb_dir = run_dir / "wandb"
    wandb_dir.mkdir(parents=True, exist_ok=True)
    run = wandb.init(project=settings.get("project", "arnq-bench"), entity=settings.get("entity"),
                     group=settings.get("group", report.name), name=f"{report.name}-report", job_type="report",
                     dir=str(wandb_dir), mode=os.environ.get("WANDB_MODE", "offline"), config=report.provenance)
    try:
        tables = {"leaderboard": report.leaderboard, "thesis": report.thesis,
                  "literature": report.views["literature"], "issues": report.issues}
        run.log({name: wandb.Table(dataframe=table) for name, table in tables.items()}
                | {f"plots/{path.stem}": wandb.Image(str(path), caption=caption) for caption, path in plots.items()})
        overall = report.thesis[(report.thesis["bits"] == ALL) & (report.thesis["ptq"] == ALL)]
        for r in overall.itertuples():
            run.summary[f"avg_improvement/{r.variant}"] = r.mean
        return Path(run.dir).parent
    finally:
        run.finish()
        wandb.teardown()  # the service has flushed the run's record log before we return (then `wandb sync` works)


def write_report(
    run_dir: str | Path,
    formats: Sequence[str] = FORMATS,
    wandb: bool = False,
    *,
    now: datetime | None = None,
    hardware: str | None = None,
    out_dir: str | Path | None = None,
) -> dict[str, Path]:
    """Write the report of a run under run_dir/report or `out_dir` (plots always, then each format); name -> path.

    `now` and `hardware` fix the report date and machine line (reproducible output).
    """
    run_dir = Path(run_dir)
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ValueError(f"report formats {unknown}: unknown; choose from {', '.join(FORMATS)}")
    rows_path = run_dir / ROWS
    rows = read_rows(rows_path)
    if not rows:
        raise ValueError(f"{rows_path}: no rows to report; run `arnq sweep` or `arnq grid` into {run_dir} first")
    space_path = run_dir / "space.json"
    space = json.loads(space_path.read_text()) if space_path.exists() else None
    written = datetime.fromtimestamp(rows_path.stat().st_mtime, timezone.utc)
    report = build_report(rows, space, name=run_dir.name, now=now, hardware=hardware, rows_written=written)

    out = Path(out_dir) if out_dir is not None else run_dir / REPORT_DIR
    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("MPLCONFIGDIR", str((run_dir / ".matplotlib").resolve()))
    plots = write_plots(report, out / "plots")
    paths = {path.relative_to(out).as_posix(): path for path in plots.values()}
    files: dict[str, str] = {}
    if "md" in formats:
        files["report.md"] = render_markdown(report, plots, out)
    if "csv" in formats:
        files["leaderboard.csv"] = report.leaderboard.to_csv(index=False)
        files["thesis.csv"] = report.thesis.to_csv(index=False)
        files["issues.csv"] = report.issues.to_csv(index=False)
        files["provenance.json"] = json.dumps(report.provenance, indent=1, ensure_ascii=False) + "\n"
    if "html" in formats:
        files["report.html"] = render_html(report, plots)
    for name, text in files.items():
        paths[name] = out / name
        paths[name].write_text(text, encoding="utf-8")
    if wandb:
        paths["wandb"] = log_wandb(report, plots, run_dir, (space or {}).get("wandb"))
    return paths
