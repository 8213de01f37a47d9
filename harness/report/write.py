"""Reading a run directory's results store into a Report, and writing the report's files."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from harness.report.plots import write_plots
from harness.report.render import render_html, render_markdown
from harness.report.tables import Report, build_merged_report, build_report
from harness.store import ROWS, read_rows

REPORT_DIR = "report"
FORMATS = ("md", "csv", "html")


def _check_formats(formats: Sequence[str]) -> None:
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ValueError(f"report formats {unknown}: unknown; choose from {', '.join(FORMATS)}")


def _space(run_dir: Path) -> dict[str, Any] | None:
    """The run's space.json (the sweep's grid and W&B settings), or None for a run without one."""
    path = run_dir / "space.json"
    return json.loads(path.read_text()) if path.exists() else None


def _run_dirs(run_dir: str | Path | Sequence[str | Path]) -> list[Path]:
    """One run directory, or several, as a list of paths."""
    return [Path(run_dir)] if isinstance(run_dir, str | Path) else [Path(d) for d in run_dir]


def _read_rows(run_dir: Path) -> tuple[list[dict[str, Any]], datetime]:
    """A run's rows and when its rows.jsonl was last written; ValueError for a run without rows."""
    rows_path = run_dir / ROWS
    rows = read_rows(rows_path)
    if not rows:
        raise ValueError(f"{rows_path}: no rows to report; run `arnq sweep`, `arnq grid` or `arnq quantize` into {run_dir} first")
    return rows, datetime.fromtimestamp(rows_path.stat().st_mtime, timezone.utc)


def read_report(
    run_dir: str | Path | Sequence[str | Path], *, now: datetime | None = None, hardware: str | None = None,
    name: str | None = None, ptqs: Sequence[str] | None = None,
) -> Report:
    """The report of the run in `run_dir` (its rows.jsonl, and its space.json if there is one).

    Given several run directories, one report over all of them (`build_merged_report`): each arm
    compared with its own run's plain rows, the grid the union of the runs' grids, the thesis view
    averaged over every run's cells. `name` names the report (default: the space's, or the runs');
    `ptqs` keeps only those PTQ methods.
    """
    dirs = _run_dirs(run_dir)
    if len(dirs) == 1:
        rows, written = _read_rows(dirs[0])
        return build_report(rows, _space(dirs[0]), name=name or dirs[0].name, now=now, hardware=hardware,
                            rows_written=written, ptqs=ptqs)
    if len(set(d.resolve() for d in dirs)) < len(dirs):
        raise ValueError(f"run directories {[str(d) for d in dirs]}: one is given twice; name each run once")
    read = [_read_rows(d) for d in dirs]
    return build_merged_report([(str(d), rows, _space(d)) for d, (rows, _) in zip(dirs, read, strict=True)], name=name,
                               now=now, hardware=hardware, rows_written=max(written for _, written in read), ptqs=ptqs)


def write_report(
    run_dir: str | Path | Sequence[str | Path],
    formats: Sequence[str] = FORMATS,
    wandb: bool = False,
    *,
    now: datetime | None = None,
    hardware: str | None = None,
    out_dir: str | Path | None = None,
    name: str | None = None,
    ptqs: Sequence[str] | None = None,
) -> dict[str, Path]:
    """Write the report of a run under run_dir/report or `out_dir` (plots always, then each format); name -> path.

    Several run directories give one report over all of them (`read_report`), written to `out_dir`,
    which they then require. `name` and `ptqs` as in `read_report`; `now` and `hardware` fix the report date
    and machine line (reproducible output).
    """
    _check_formats(formats)
    dirs = _run_dirs(run_dir)
    if len(dirs) > 1 and out_dir is None:
        raise ValueError(f"a report over {len(dirs)} runs needs its own folder: pass out_dir (--out DIR)")
    report = read_report(dirs, now=now, hardware=hardware, name=name, ptqs=ptqs)
    home = dirs[0] if len(dirs) == 1 else Path(out_dir)  # where the report keeps its W&B files
    return save_report(report, home, formats, wandb, out_dir=out_dir)


def save_report(
    report: Report, run_dir: str | Path, formats: Sequence[str] = FORMATS, wandb: bool = False, *,
    out_dir: str | Path | None = None,
) -> dict[str, Path]:
    """Write a built report's plots and files under run_dir/report or `out_dir`; name -> path."""
    _check_formats(formats)
    run_dir = Path(run_dir)
    out = Path(out_dir) if out_dir is not None else run_dir / REPORT_DIR
    out.mkdir(parents=True, exist_ok=True)
    plots = write_plots(report, out / "plots")
    paths = {path.relative_to(out).as_posix(): path for path in plots.values()}
    files: dict[str, str] = {}
    if "md" in formats:
        files["report.md"] = render_markdown(report, plots, out)
    if "csv" in formats:
        files["leaderboard.csv"] = report.leaderboard.to_csv(index=False)
        files["thesis.csv"] = report.thesis.to_csv(index=False)
        files["best.csv"] = report.best.to_csv(index=False)
        files["issues.csv"] = report.issues.to_csv(index=False)
        files["trials.csv"] = report.trials.to_csv(index=False)
        files["provenance.json"] = json.dumps(report.provenance, indent=1, ensure_ascii=False) + "\n"
    if "html" in formats:
        files["report.html"] = render_html(report, plots)
    for name, text in files.items():
        paths[name] = out / name
        paths[name].write_text(text, encoding="utf-8")
    if wandb:
        from harness.report.wandb_logger import log_wandb

        paths["wandb"] = log_wandb(report, plots, run_dir, (_space(run_dir) or {}).get("wandb"))
    return paths
