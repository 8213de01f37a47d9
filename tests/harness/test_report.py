"""The leaderboard reporter: golden Markdown and CSV from hand-made rows, HTML, plots, the W&B report run.

golden/rows.jsonl: 2 models x 2 bits x 2 PTQ methods x (plain, arnq[schedule=linear], quanttune)
x 2 seeds, with a failed plain trial (vit_mnist W4A4 percentile seed 1), a stopped one
(minilm_rt W4A4 minmax quanttune seed 0), a missing one (minilm_rt W8A8 percentile arnq
seed 1), a failed first attempt superseded by its re-run, and a torn last line. The golden
outputs were checked by hand against the q_acc values in those rows.
"""

import base64
import json
import os
import shutil
from datetime import datetime, timezone
from html.parser import HTMLParser
from pathlib import Path

import pytest

from harness.report import ALL, build_report, write_report
from harness.store import read_rows

GOLDEN = Path(__file__).parent / "golden"
NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
ROWS_WRITTEN = 1767225600  # 2026-01-01 00:00:00 UTC, the rows file's mtime in every test run
HARDWARE = "x86_64, 8 CPUs, 1 x NVIDIA H100 80GB HBM3"
GOLDEN_FILES = ("report.md", "leaderboard.csv", "thesis.csv", "issues.csv", "provenance.json")
PNG = b"\x89PNG\r\n\x1a\n"


def make_run(root: Path, with_space: bool = True) -> Path:
    run = root / "golden"
    run.mkdir()
    shutil.copy(GOLDEN / "rows.jsonl", run)
    if with_space:
        shutil.copy(GOLDEN / "space.json", run)
    os.utime(run / "rows.jsonl", (ROWS_WRITTEN, ROWS_WRITTEN))
    return run


@pytest.fixture(scope="module")
def golden_run(tmp_path_factory):
    """The golden run reported once in every format: (run dir, returned paths)."""
    run = make_run(tmp_path_factory.mktemp("report"))
    return run, write_report(run, now=NOW, hardware=HARDWARE)


@pytest.mark.parametrize("name", GOLDEN_FILES)
def test_markdown_and_csv_outputs_equal_the_golden_files(golden_run, name):
    run, paths = golden_run
    assert paths[name] == run / "report" / name
    assert paths[name].read_text(encoding="utf-8") == (GOLDEN / name).read_text(encoding="utf-8")


def test_best_arm_mark_needs_the_highest_mean_improvement_above_zero_and_marks_ties():
    report = build_report(read_rows(GOLDEN / "rows.jsonl"), json.loads((GOLDEN / "space.json").read_text()))
    board = report.leaderboard
    best = board[board["best"] & (board["metric"] == "improvement")]
    assert sorted(zip(best["model"], best["bits"], best["ptq"], best["variant"], best["mean"], strict=True)) == sorted([
        ("vit_mnist", "W8A8", "minmax", "arnq[schedule=linear]", 0.1),
        ("vit_mnist", "W4A4", "minmax", "arnq[schedule=linear]", 5.5),
        ("vit_mnist", "W4A4", "percentile", "arnq[schedule=linear]", 2.0),  # a tie: both marked
        ("vit_mnist", "W4A4", "percentile", "quanttune", 2.0),
        ("minilm_rt", "W8A8", "minmax", "quanttune", 0.2),
        ("minilm_rt", "W8A8", "percentile", "quanttune", 0.15),
        ("minilm_rt", "W4A4", "minmax", "arnq[schedule=linear]", 9.0),
    ])  # vit W8A8 percentile (best -0.10) and minilm W4A4 percentile (best 0.00) have no mark
    # the failed plain seed leaves one paired seed: improvement over n=1, q_acc over n=2
    cell = board[(board["model"] == "vit_mnist") & (board["bits"] == "W4A4") & (board["ptq"] == "percentile")
                 & (board["arm"] == "arnq")].set_index("metric")
    assert (cell.loc["q_acc", "n"], cell.loc["improvement", "n"]) == (2, 1)


def test_without_space_json_the_grid_is_what_the_rows_show(tmp_path):
    run = make_run(tmp_path, with_space=False)
    paths = write_report(run, formats=("md", "csv"), now=NOW, hardware=HARDWARE)
    assert "report.html" not in paths
    # rows written W4A4 first still give W8A8 first (widest bits first); every cross-product cell is in the rows
    expected = (GOLDEN / "report.md").read_text(encoding="utf-8").replace(
        "Grid: space.json.",
        "Grid: the cross product of the models, bits, PTQ methods, arm variants and seeds the rows show.")
    assert paths["report.md"].read_text(encoding="utf-8") == expected
    for name in ("leaderboard.csv", "thesis.csv", "issues.csv"):
        assert paths[name].read_text() == (GOLDEN / name).read_text()


def test_a_wider_space_lists_more_missing_cells_and_leaves_the_means_alone():
    rows = read_rows(GOLDEN / "rows.jsonl")
    space = json.loads((GOLDEN / "space.json").read_text())
    golden = build_report(rows, space)
    wider = build_report(rows, {**space, "seeds": [0, 1, 2]})
    missing = wider.issues[wider.issues["status"] == "missing"]
    assert len(missing) == 2 * 2 * 2 * 3 + 1  # every seed-2 cell, and the one seed-1 cell
    assert set(missing["seed"]) == {1, 2}
    assert wider.leaderboard.equals(golden.leaderboard)
    assert wider.provenance["rows"] == "47 trials (45 ok, 1 failed, 1 stopped); grid cells without a row: 25"


def test_a_space_json_that_gives_no_grid_falls_back_to_the_rows(caplog):
    rows = read_rows(GOLDEN / "rows.jsonl")
    space = json.loads((GOLDEN / "space.json").read_text())
    report = build_report(rows, {**space, "arms": [["no_such_arm", {}]]})  # e.g. an arm since renamed
    assert report.grid_source.startswith("the cross product") and "does not give a grid" in caplog.text
    assert report.grid_cells == 48 and (report.issues["status"] == "missing").sum() == 1


def test_rows_without_provenance_or_config_still_report():
    """Older rows (before provenance and config were recorded): unknowns are said, schedules come from arm_params."""
    dropped = ("space", "space_hash", "git_commit", "versions", "python", "host", "node_id", "config")
    rows = [{k: v for k, v in r.items() if k not in dropped} for r in read_rows(GOLDEN / "rows.jsonl")]
    report = build_report(rows, name="old_run", now=NOW, hardware=HARDWARE)
    assert report.name == "old_run"
    assert report.provenance["git_commit"] == report.provenance["versions"] == "unknown"
    assert report.provenance["trial_hosts"] == "not recorded"
    assert report.schedules == (("linear", {"alpha_max": 1.0, "warmup_frac": 0.2, "n_steps": 4},
                                 ("arnq[schedule=linear]",)),)
    overall = report.thesis[(report.thesis["bits"] == ALL) & (report.thesis["ptq"] == ALL)]
    assert overall.set_index("variant")["mean"].to_dict() == {"arnq[schedule=linear]": 1.9688, "quanttune": 0.8438}


class _Tables(HTMLParser):
    """Cell texts of every table row, and every <img> src."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self.images: list[str] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "img":
            self.images.append(dict(attrs)["src"])

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self.rows[-1].append("".join(self._cell))
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def test_html_is_one_self_contained_page_with_every_table_row_and_the_plots(golden_run):
    run, paths = golden_run
    page = paths["report.html"].read_text(encoding="utf-8")
    parser = _Tables()
    parser.feed(page)
    parser.close()
    report = build_report(read_rows(run / "rows.jsonl"), json.loads((run / "space.json").read_text()))
    for view in ("leaderboard", "thesis", "literature"):
        table = report.views[view]
        assert list(table.columns) in parser.rows
        for row in table.itertuples(index=False):
            assert [str(v) for v in row] in parser.rows
    assert ["failed", "vit_mnist", "W4A4", "percentile", "plain", "1",
            "FloatingPointError: loss is nan at step 3"] in parser.rows
    assert ["missing", "minilm_rt", "W8A8", "percentile", "arnq[schedule=linear]", "1", "no row"] in parser.rows
    assert len(parser.images) == 4
    for src in parser.images:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1]).startswith(PNG)
    assert "<style>" in page and "<script>" in page and "89abcdef0123456789abcdef" in page  # provenance header
    assert "http://" not in page and "https://" not in page  # no network assets


def test_plots_are_written_as_non_empty_pngs(golden_run):
    run, paths = golden_run
    plots = {name: path for name, path in paths.items() if name.startswith("plots/")}
    assert sorted(plots) == ["plots/accuracy_vs_bits_minilm_rt.png", "plots/accuracy_vs_bits_vit_mnist.png",
                             "plots/improvement_heatmap.png", "plots/noise_schedules.png"]
    for path in plots.values():
        data = path.read_bytes()
        assert data.startswith(PNG) and len(data) > 5000
    assert "![noise schedules](plots/noise_schedules.png)" in paths["report.md"].read_text(encoding="utf-8")


def test_wandb_report_run_is_offline_under_the_run_dir_with_tables_and_summary(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    run = make_run(tmp_path)
    paths = write_report(run, formats=("csv",), wandb=True, now=NOW, hardware=HARDWARE)
    wandb_run = paths["wandb"]
    assert wandb_run.parent == run / "wandb" / "wandb" and wandb_run.name.startswith("offline-run-")
    tables = {p.name.split("_")[0]: p for p in (wandb_run / "files" / "media" / "table").glob("*.table.json")}
    assert sorted(tables) == ["issues", "leaderboard", "literature", "thesis"]
    leaderboard = json.loads(tables["leaderboard"].read_text())
    assert leaderboard["columns"] == ["model", "bits", "ptq", "arm", "arm_params", "variant", "metric", "mean", "std",
                                      "n", "best"]
    assert len(leaderboard["data"]) == len((GOLDEN / "leaderboard.csv").read_text().splitlines()) - 1
    assert len(list((wandb_run / "files" / "media" / "images").rglob("*.png"))) == 4
    log = next(wandb_run.glob("run-*.wandb")).read_bytes()  # the summary lives only in the run's record log
    assert b"golden-report" in log
    assert b"avg_improvement/arnq[schedule=linear]" in log and b"1.9688" in log


def test_unknown_formats_and_runs_without_rows_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match=r"report formats \['pdf'\]: unknown; choose from md, csv, html"):
        write_report(tmp_path, formats=("md", "pdf"))
    with pytest.raises(ValueError, match="no rows to report"):
        write_report(tmp_path)
