"""PNG plots of a report: accuracy vs bits per model, the improvement heatmap, the noise schedules.

Figures are drawn on Agg canvases (`matplotlib.figure.Figure`), never through pyplot, so
the reporter selects no backend and keeps no figure state in the process.
"""

from __future__ import annotations

import itertools
import logging
import math
import re
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from harness.report.axes import Axes
from harness.report.tables import ALL, Report

if TYPE_CHECKING:
    from matplotlib.axes import Axes as PlotAxes
    from matplotlib.figure import Figure

log = logging.getLogger(__name__)

SCHEDULE_STEPS = 1000  # the resolution of a plotted noise schedule


def write_plots(report: Report, out_dir: Path) -> dict[str, Path]:
    """PNG plots (accuracy vs bits per model, improvement heatmap, noise schedules); caption -> path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    figures = itertools.chain(_accuracy_figures(report), _heatmap_figure(report), _schedule_figure(report))
    plots: dict[str, Path] = {}
    for caption, stem, fig in figures:
        path = out_dir / f"{stem}.png"
        fig.savefig(path, format="png", dpi=100)
        plots[caption] = path
    return plots


def _new_figure(width: float, height: float) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # lazy: Agg canvases, pyplot untouched
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)


def _accuracy_figures(report: Report) -> Iterable[tuple[str, str, Figure]]:
    """Per model: q_acc vs bits, one panel per PTQ method, a line per arm variant, FP dashed."""
    axes = report.axes
    board = report.leaderboard
    for model in dict.fromkeys(board["model"]):
        rows = board[board["model"] == model]
        ptqs = [q for q in axes.ptqs if q in set(rows["ptq"])]
        fig = _new_figure(max(4.5 * len(ptqs), 7), 3.5 + 0.15 * len(axes.variants))
        panels = fig.subplots(1, len(ptqs), squeeze=False, sharey=True)[0]
        fp = rows.loc[rows["metric"] == "fp_acc", "mean"].mean()
        for ax, ptq in zip(panels, ptqs, strict=True):
            _accuracy_panel(ax, rows[(rows["metric"] == "q_acc") & (rows["ptq"] == ptq)], axes, fp)
            ax.set_title(ptq)
        panels[0].set_ylabel("quantized accuracy (%)")
        handles: dict[str, Any] = {}
        for ax in panels:
            for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
                handles.setdefault(label, handle)
        fig.legend(handles.values(), handles.keys(), loc="outside lower center", ncols=2, fontsize="small")
        fig.suptitle(f"{model}: accuracy vs bits (mean ± std over seeds)")
        yield f"accuracy vs bits: {model}", f"accuracy_vs_bits_{_slug(model)}", fig


def _accuracy_panel(ax: PlotAxes, q_acc: pd.DataFrame, axes: Axes, fp: float) -> None:
    for arm, params in axes.variants:
        points = q_acc[(q_acc["arm"] == arm) & (q_acc["arm_params"] == params)]
        points = points.assign(x=points["bits"].map(axes.bits.index)).sort_values("x")
        if len(points):
            ax.errorbar(points["x"], points["mean"], yerr=points["std"], marker="o", capsize=3,
                        label=axes.label((arm, params)))
    ax.axhline(fp, color="black", linestyle="--", linewidth=1, label="FP")
    ax.set_xticks(range(len(axes.bits)), axes.bits)
    ax.set_xlabel("bits")


def _heatmap_figure(report: Report) -> Iterable[tuple[str, str, Figure]]:
    """Each variant's mean improvement per (bits, PTQ method) cell, one panel per bits; none without variants."""
    axes = report.axes
    cells = report.thesis[(report.thesis["bits"] != ALL) & (report.thesis["ptq"] != ALL)]
    if not len(cells):
        return
    bits_shown = [b for b in axes.bits if b in set(cells["bits"])]
    variants = list(dict.fromkeys(cells["variant"]))
    limit = max(cells["mean"].abs().max(), 0.01)
    fig = _new_figure(1.2 + 1.6 * len(axes.ptqs) * len(bits_shown) + 2.5, 1.2 + 0.5 * len(variants))
    panels = fig.subplots(1, len(bits_shown), squeeze=False, sharey=True)[0]
    for ax, bits in zip(panels, bits_shown, strict=True):
        grid = [[math.nan] * len(axes.ptqs) for _ in variants]
        for r in cells[cells["bits"] == bits].itertuples():
            grid[variants.index(r.variant)][axes.ptqs.index(r.ptq)] = r.mean
        image = _heatmap_panel(ax, grid, limit)
        ax.set_xticks(range(len(axes.ptqs)), axes.ptqs)
        ax.set_yticks(range(len(variants)), variants)
        ax.set_title(bits)
    fig.colorbar(image, ax=list(panels), label="improvement over plain (pp)")
    fig.suptitle("mean improvement over the plain baseline, averaged over models")
    yield "improvement heatmap", "improvement_heatmap", fig


def _heatmap_panel(ax: PlotAxes, grid: list[list[float]], limit: float) -> Any:
    """The grid as a diverging image, each value written in its cell; returns the image."""
    image = ax.imshow(grid, cmap="RdBu", vmin=-limit, vmax=limit, aspect="auto")
    for i, j in itertools.product(range(len(grid)), range(len(grid[0]))):
        if not math.isnan(grid[i][j]):
            dark = abs(grid[i][j]) > 0.6 * limit
            ax.text(j, i, f"{grid[i][j]:+.2f}", ha="center", va="center", fontsize="small",
                    color="white" if dark else "black")
    return image


def _schedule_figure(report: Report) -> Iterable[tuple[str, str, Figure]]:
    """α(t) of every noise schedule the run's arms used; none without one."""
    if not report.schedules:
        return
    from arnq.arms.schedules import SCHEDULE_PARAMS, schedule_value

    total = SCHEDULE_STEPS
    fig = _new_figure(7, 3.5 + 0.2 * len(report.schedules))
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
    yield "noise schedules", "noise_schedules", fig
