"""The leaderboard report of a run, built from its rows.jsonl: Markdown, CSV, HTML, plots and a W&B run.

- `axes`, `stats`, `tables`, `provenance`: the aggregation of the rows into every table and the header;
- `plots`: PNG plots drawn on Agg canvases;
- `render`: the Markdown document and the self-contained HTML page;
- `wandb_logger`: the report as one W&B run;
- `write`: a run directory's store in, the report's files out.
"""

from harness.report.axes import Axes, variant_label
from harness.report.plots import write_plots
from harness.report.render import render_html, render_markdown
from harness.report.stats import add_baselines, mean_std
from harness.report.tables import ALL, BEST_MARK, METRICS, Report, build_report
from harness.report.wandb_logger import log_wandb
from harness.report.write import FORMATS, REPORT_DIR, read_report, save_report, write_report

__all__ = [
    "ALL", "BEST_MARK", "FORMATS", "METRICS", "REPORT_DIR", "Axes", "Report", "add_baselines", "build_report",
    "log_wandb", "mean_std", "read_report", "render_html", "render_markdown", "save_report", "variant_label",
    "write_plots", "write_report",
]
