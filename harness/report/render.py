"""A report as one Markdown document and as one self-contained HTML page."""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping
from functools import cache
from importlib.resources import files
from pathlib import Path

import pandas as pd

from harness.report.provenance import STATUS_ORDER
from harness.report.tables import BEST_RULE, Report, answer_lines

LEADERBOARD = (
    "Quantized accuracy q_acc (%) and its improvement Δ (percentage points) over the plain-fine-tune baseline "
    "of the same model, bits, PTQ method and seed, as mean ± sample std over seeds; n counts the seeds with "
    "status ok, and for Δ only those whose plain baseline is ok too. FP (before fine-tuning): the accuracy of "
    "the full-precision checkpoint every arm starts from; what each fine-tune itself cost (ft − FP) and what "
    "quantizing it cost (q − ft) are in the Fine-tuned models table. " + BEST_RULE)
PLAIN_LEADERBOARD = (
    "Quantized accuracy q_acc (%) and its drop (percentage points) from the accuracy of the same model before "
    "quantization (fine-tuned by the plain arm in a sweep; the FP model itself in `arnq quantize`), as mean ± "
    "sample std over seeds; n counts the seeds with status ok. FP: the full-precision model.")
THESIS = (
    "Improvement over the plain baseline (percentage points) of each arm variant: its mean Δ per (model, bits, "
    "PTQ method) cell, averaged over the cells of each model (where the report has several), of each bit-width, "
    "of each PTQ method, and of all of them (all); "
    "± is the std across cells and n counts cells.")
BEST = (
    "Does an arm add anything to the best PTQ method? Per model and bit-width: the PTQ method with the highest "
    "mean q_acc after plain fine-tuning, the (arm variant, PTQ method) combination of the other arms with the "
    "highest mean q_acc, and the combination's q_acc minus that plain one, paired by seed over the seeds both "
    "have (mean ± sample std), with the two-sided paired t-test's p-value (verdict at p < 0.05). Both are picked "
    "on these same seeds, which favours them: confirm a gain on fresh seeds before relying on it.")
LITERATURE = (
    "Per model, the FP accuracy and the plain arm's quantized accuracy (mean over seeds) with its change from FP "
    "in parentheses, per PTQ method and bit-width (the FQ-ViT / PTQ4ViT / RepQ-ViT README layout).")
PLAIN_LITERATURE = LITERATURE.replace("the plain arm's quantized accuracy", "the quantized accuracy")
VARIANTS = (
    "The arm variants the tables name by label: each label's arm and the parameters it sets; every other "
    "parameter is the arm's default (docs/arms.md). A label is the space's `label:` for the variant, else the "
    "arm's name with the fewest parameters that tell it apart from the run's other variants of that arm.")
ANSWER = (
    "Per model and bit-width: the best fine-tuning arm x PTQ method combination against the best PTQ method "
    "after plain fine-tuning (quantized accuracy, %, mean ± sample std over seeds), the paired difference by "
    "seed and its verdict at p < 0.05 (details: Best combination).")
FINETUNE = (
    "Before quantization: each arm variant's fine-tuned accuracy ft_acc (%, in full precision), its change from "
    "the FP checkpoint before fine-tuning (ft − FP: what the fine-tune cost or gained), the change that quantizing "
    "it brought (q − ft, q the quantized accuracy), and, where the trials recorded "
    "diagnostics, max/σ after fine-tuning (the mean over linear layers of their input's max|x| / std: lower "
    "leaves a min-max quantizer more levels for typical values), as mean ± sample std over seeds; n counts "
    "the seeds with status ok.")


def sections(report: Report) -> list[tuple[str, str, pd.DataFrame]]:
    """(title, caption, display table) of every table, in report order.

    No thesis view without arms to compare, no fine-tune table when nothing was fine-tuned (`arnq quantize`).
    """
    counts = report.issues["status"].value_counts()
    issues = ", ".join(f"{counts.get(s, 0)} {s}" for s in dict.fromkeys((*STATUS_ORDER, *counts.index, "missing")))
    compared = report.compares_arms
    return [
        ("Leaderboard", LEADERBOARD if compared else PLAIN_LEADERBOARD, report.views["leaderboard"]),
        *([("Arm variants", VARIANTS, report.views["variants"])] if compared else []),
        *([("Best combination", BEST, report.views["best"])] if compared and not report.views["best"].empty else []),
        *([("Thesis view", THESIS, report.views["thesis"])] if compared else []),
        ("Literature view", LITERATURE if compared else PLAIN_LITERATURE, report.views["literature"]),
        *([("Fine-tuned models", FINETUNE, report.views["finetune"])] if not report.views["finetune"].empty else []),
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
    answer = answer_lines(report)
    if answer:
        lines += ["", "## Answer", "", ANSWER, ""] + [f"- {line}" for line in answer]
    for title, caption, table in sections(report):
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


@cache
def _static(name: str) -> str:
    """A file of the package's static/ folder (the page's stylesheet and sort script)."""
    return files("harness.report").joinpath("static", name).read_text(encoding="utf-8")


def _html_table(table: pd.DataFrame) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in table.columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>\n"
                   for row in table.itertuples(index=False))
    return f'<table class="sortable"><thead><tr>{head}</tr></thead>\n<tbody>\n{body}</tbody></table>'


def _html_figure(caption: str, path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(caption)}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def render_html(report: Report, plots: Mapping[str, Path]) -> str:
    """The report as one self-contained page: inline CSS and sort script, plots as base64 data URIs."""
    esc = html.escape
    parts = [f"<h1>{esc(report.name)}: leaderboard report</h1>", '<ul class="provenance">']
    parts += [f"<li><b>{esc(key)}</b>: {esc(value)}</li>" for key, value in report.provenance.items()]
    parts.append("</ul>")
    answer = answer_lines(report)
    if answer:
        parts += ["<h2>Answer</h2>", f"<p>{esc(ANSWER)}</p>", "<ul>", *(f"<li>{esc(line)}</li>" for line in answer),
                  "</ul>"]
    for title, caption, table in sections(report):
        parts += [f"<h2>{esc(title)}</h2>", f"<p>{esc(caption)}</p>", "<p>None.</p>" if table.empty else _html_table(table)]
    if plots:
        parts.append("<h2>Plots</h2>")
    parts += [_html_figure(caption, path) for caption, path in plots.items()]
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{esc(report.name)} report</title>'
            f"<style>\n{_static('report.css')}</style></head>\n<body>\n" + "\n".join(parts)
            + f"\n<script>\n{_static('sort.js')}</script>\n</body></html>\n")
