"""One report over several runs: the golden run split by model into two runs reports as the whole does."""

import json
import os

import pandas as pd
import pytest

from harness.cli import main
from harness.report import ALL, read_report, write_report
from harness.store import read_rows
from tests.harness.report.golden_run import GOLDEN, HARDWARE, NOW, ROWS_WRITTEN


def _run(root, name, rows):
    run = root / name
    run.mkdir()
    (run / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    os.utime(run / "rows.jsonl", (ROWS_WRITTEN, ROWS_WRITTEN))
    return run


@pytest.fixture
def split(tmp_path):
    """The golden rows as two runs, one per model, neither with a space.json."""
    rows = read_rows(GOLDEN / "rows.jsonl")
    return [_run(tmp_path, model, [r for r in rows if r["model"] == model]) for model in ("vit_mnist", "minilm_rt")]


def _thesis(report):
    return report.thesis.set_index(["variant", "model", "bits", "ptq"])["mean"]


def test_two_runs_report_as_the_one_run_they_were_split_from(tmp_path, split):
    whole = read_report(_run(tmp_path, "whole", read_rows(GOLDEN / "rows.jsonl")), now=NOW, hardware=HARDWARE)
    merged = read_report(split, now=NOW, hardware=HARDWARE)
    assert merged.name == f"{split[0]} + {split[1]}"
    pd.testing.assert_frame_equal(merged.leaderboard, whole.leaderboard)
    pd.testing.assert_frame_equal(merged.thesis, whole.thesis)
    assert merged.views["best"].equals(whole.views["best"])
    assert list(merged.trials["run"].unique()) == [str(run) for run in split]
    # the thesis view's per-model averages are each run's own overall average
    for run in split:
        alone = _thesis(read_report(run, now=NOW, hardware=HARDWARE))
        for variant in ("arnq", "quanttune"):
            assert _thesis(merged)[variant, run.name, ALL, ALL] == alone[variant, ALL, ALL, ALL]
    assert _thesis(merged)["arnq", ALL, ALL, ALL] == 1.9688  # (1.875 + 2.0625) / 2, golden thesis.csv


def test_the_grid_is_the_union_of_the_runs_grids_not_their_cross_product(tmp_path, split):
    minilm_w4a4 = [r for r in read_rows(split[1] / "rows.jsonl") if r["bits"] == "W4A4"]
    third = _run(tmp_path, "w4a4_only", [{**r, "model": "other_model"} for r in minilm_w4a4])
    report = read_report([*split, third], now=NOW, hardware=HARDWARE)
    assert report.grid_cells == 24 + 24 + 12  # other_model at W8A8 is no one's cell, so not missing
    issues = report.issues
    assert not ((issues["model"] == "other_model") & (issues["bits"] == "W8A8")).any()
    assert (issues["model"] == "other_model").sum() == 1  # the stopped trial its rows were copied with
    assert report.grid_source.startswith("the union of the runs' grids")


def test_a_cell_in_two_runs_is_refused_naming_both(tmp_path, split):
    copy = _run(tmp_path, "again", read_rows(split[0] / "rows.jsonl"))
    with pytest.raises(ValueError, match=r"vit_mnist/W8A8/minmax has rows in both .*vit_mnist and .*again"):
        read_report([split[0], copy])
    with pytest.raises(ValueError, match="one is given twice"):
        read_report([split[0], split[0]])


def test_a_merged_report_needs_its_own_folder_and_names_differing_plain_budgets(tmp_path, split, caplog):
    with pytest.raises(ValueError, match=r"needs its own folder: pass out_dir \(--out DIR\)"):
        write_report(split)
    rows = read_rows(split[1] / "rows.jsonl")
    changed = [{**r, "config": json.dumps({"finetune": {"lr": 1e-4}})} for r in rows]
    other = _run(tmp_path, "other_budget", [{**r, "model": "vit_mnist", "config": json.dumps({"finetune": {"lr": 5e-5}})}
                                            for r in read_rows(split[0] / "rows.jsonl")])
    rt = _run(tmp_path, "rt_budget", changed)
    assert "plain_finetune_settings" not in read_report([other, rt]).provenance  # each model has one setting
    mixed = _run(tmp_path, "mixed", [{**r, "model": "vit_mnist", "ptq": "omse"} for r in changed])
    note = read_report([other, mixed]).provenance["plain_finetune_settings"]
    assert note.startswith("vit_mnist differs across runs") and "pairs seeds across these runs" in note
    assert "fine-tune the plain arm differently" in caplog.text


def test_the_cli_reports_several_runs_into_out(tmp_path, split, capsys):
    out = tmp_path / "thesis_view"
    assert main(["report", *map(str, split), "--out", str(out), "--name", "two models", "--format", "md,csv"]) == 0
    text = (out / "report.md").read_text()
    assert text.startswith("# two models: leaderboard report")
    assert "| arm variant   | vit_mnist " in text
    assert "run" in pd.read_csv(out / "trials.csv").columns
    assert main(["report", *map(str, split)]) == 2  # a usage error, before anything is read
    assert "needs its own folder" in capsys.readouterr().err


def test_ptqs_keeps_only_those_methods_rows_and_grid_cells(split):
    whole = _thesis(read_report(split, now=NOW, hardware=HARDWARE))
    minmax = read_report(split, now=NOW, hardware=HARDWARE, ptqs=["minmax"])
    assert minmax.axes.ptqs == ("minmax",) and set(minmax.trials["ptq"]) == {"minmax"}
    assert minmax.grid_cells == 24 and set(minmax.issues["ptq"]) <= {"minmax"}
    assert _thesis(minmax)["arnq", ALL, ALL, ALL] == whole["arnq", ALL, ALL, "minmax"]
    with pytest.raises(ValueError, match=r"PTQ methods \['gptq'\]: no rows or grid cells of them .* minmax, percentile"):
        read_report(split[0], ptqs=["minmax", "gptq"])
