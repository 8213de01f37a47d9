"""A run's report as one W&B run (job_type 'report'): every table, every plot, the average improvements."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from harness.report.tables import ALL, Report

log = logging.getLogger(__name__)


def log_wandb(report: Report, plots: Mapping[str, Path], run_dir: Path, settings: Mapping[str, Any] | None = None) -> Path:
    """One W&B run (job_type 'report') with every table, plot and the average improvements; returns its directory.

    Offline unless WANDB_MODE says otherwise; `settings` is the space's wandb block (project, entity).
    W&B itself prints nothing; an online run's URL is logged.
    """
    import wandb

    settings = settings or {}
    wandb_dir = run_dir / "wandb"
    wandb_dir.mkdir(parents=True, exist_ok=True)
    run = wandb.init(project=settings.get("project", "arnq-bench"), entity=settings.get("entity"),
                     group=settings.get("group", report.name), name=f"{report.name}-report", job_type="report",
                     dir=str(wandb_dir), mode=os.environ.get("WANDB_MODE", "offline"), config=report.provenance,
                     settings=wandb.Settings(silent=True, console="off"))  # its banner and summary: not in our output
    if not run.offline:  # online: the one line of W&B's banner a user needs
        log.info("W&B report run: %s", run.url)
    try:
        tables = {"leaderboard": report.leaderboard, "thesis": report.thesis,
                  "literature": report.views["literature"], "issues": report.issues}
        run.log({name: wandb.Table(dataframe=table) for name, table in tables.items()}
                | {f"plots/{path.stem}": wandb.Image(str(path), caption=caption) for caption, path in plots.items()})
        thesis = report.thesis
        overall = thesis[(thesis["model"] == ALL) & (thesis["bits"] == ALL) & (thesis["ptq"] == ALL)]
        for r in overall.itertuples():
            run.summary[f"avg_improvement/{r.variant}"] = r.mean
        return Path(run.dir).parent
    finally:
        run.finish()
        wandb.teardown()  # the service has flushed the run's record log before we return (then `wandb sync` works)
