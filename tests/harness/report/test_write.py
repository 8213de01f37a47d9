"""write_report: the golden run's Markdown and CSV files, format and empty-run errors, no process state."""

import os

import pytest

from harness.report import write_report
from tests.harness.report.golden_run import GOLDEN, GOLDEN_FILES, HARDWARE, NOW, make_run


@pytest.mark.parametrize("name", GOLDEN_FILES)
def test_markdown_and_csv_outputs_equal_the_golden_files(golden_run, name):
    run, paths = golden_run
    assert paths[name] == run / "report" / name
    assert paths[name].read_text(encoding="utf-8") == (GOLDEN / name).read_text(encoding="utf-8")


def test_without_space_json_the_grid_is_what_the_rows_show(tmp_path):
    run = make_run(tmp_path, with_space=False)
    paths = write_report(run, formats=("md", "csv"), now=NOW, hardware=HARDWARE)
    assert "report.html" not in paths
    # rows written W4A4 first still give W8A8 first (widest bits first); every cross-product cell is in the rows
    expected = (GOLDEN / "report.md").read_text(encoding="utf-8").replace(
        "Grid: space.json.",
        "Grid: the cross product of the models, bits, PTQ methods, arm variants and seeds the rows show.")
    assert paths["report.md"].read_text(encoding="utf-8") == expected
    for name in ("leaderboard.csv", "best.csv", "thesis.csv", "issues.csv"):
        assert paths[name].read_text() == (GOLDEN / name).read_text()


def test_unknown_formats_and_runs_without_rows_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match=r"report formats \['pdf'\]: unknown; choose from md, csv, html"):
        write_report(tmp_path, formats=("md", "pdf"))
    with pytest.raises(ValueError, match="no rows to report"):
        write_report(tmp_path)


def test_write_report_leaves_the_environment_unchanged(tmp_path, monkeypatch):
    """Matplotlib's config dir (MPLCONFIGDIR) and anything else in os.environ is the entry point's business."""
    monkeypatch.delenv("MPLCONFIGDIR", raising=False)
    before = dict(os.environ)
    paths = write_report(make_run(tmp_path), now=NOW, hardware=HARDWARE)
    assert paths["report.md"].is_file() and paths["plots/improvement_heatmap.png"].is_file()
    assert dict(os.environ) == before
