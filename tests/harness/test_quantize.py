"""arnq quantize's run directory: the sweep's results store (rows.jsonl), reported by the sweep's reporter."""

import json

import pytest

import harness.quantize
from harness.quantize import QuantizeJob, quantize_into
from harness.report import build_report, write_report
from harness.store import ROWS, read_rows
from tests.test_finetune import _loaded

# the columns every sweep row has (harness/pipeline.py run_trial, README "Sweeps")
SWEEP_COLUMNS = {"model", "task", "bits", "w_bits", "a_bits", "ptq", "arm", "arm_params", "seed", "fp_acc", "ft_acc",
                 "q_acc", "status", "trial_id", "git_commit", "versions", "python", "host", "cpu", "threads"}


@pytest.fixture(scope="module")
def quantize_run(tmp_path_factory):
    """A tiny-ViT job (2 PTQ methods x 2 bits) run into a directory that held an earlier run: (root, run, rows)."""
    loaded = _loaded()
    patch = pytest.MonkeyPatch()
    patch.setattr(harness.quantize, "load_model", lambda *args, **kwargs: loaded)
    root = tmp_path_factory.mktemp("quantize")
    run = root / "quantize"
    run.mkdir()
    (run / "rows.jsonl").write_text('{"trial_id": "an earlier run"}\n')
    job = QuantizeJob(models=("vit_mnist",), ptq=("minmax", "percentile"), bits=("W8A8", "W4A4"), calib_size=32)
    try:
        rows = quantize_into(job, run)
    finally:
        patch.undo()
    return root, run, rows


def test_a_quantize_run_writes_sweep_rows_to_the_store(quantize_run):
    root, run, rows = quantize_run
    assert sorted(p.name for p in run.iterdir()) == ["job.json", ROWS]
    assert [p.name for p in root.iterdir() if p.name.startswith("quantize.")]  # the earlier run, moved aside
    assert read_rows(run / ROWS) == rows and len(rows) == 4
    assert len({r["trial_id"] for r in rows}) == 4
    for row in rows:
        assert SWEEP_COLUMNS <= set(row)
        assert (row["arm"], row["arm_params"], row["status"]) == ("plain", "{}", "ok")
        assert row["ft_acc"] == row["fp_acc"] and 0 <= row["q_acc"] <= 100
        assert row["calib_size"] == 32 and row["calib_s"] >= 0 and row["eval_s"] >= 0
    assert [(r["bits"], r["ptq"]) for r in rows] == [("W8A8", "minmax"), ("W4A4", "minmax"),
                                                     ("W8A8", "percentile"), ("W4A4", "percentile")]
    assert json.loads((run / "job.json").read_text())["job"]["ptq"] == ["minmax", "percentile"]


def test_the_reporter_shows_fp_q_acc_and_drop_per_model_bits_and_ptq(quantize_run):
    _, run, rows = quantize_run
    board = build_report(rows).views["leaderboard"]
    assert list(board.columns) == ["model", "bits", "ptq", "FP", "q_acc", "drop"]
    by_cell = {(r["bits"], r["ptq"]): r for r in rows}
    for view in board.to_dict("records"):
        row = by_cell[(view["bits"], view["ptq"])]
        assert view["FP"] == f"{row['fp_acc']:.2f}"
        assert view["q_acc"] == f"{row['q_acc']:.2f} (n=1)"
        assert view["drop"] == f"{round(row['fp_acc'] - row['q_acc'], 2):.2f} (n=1)"
    paths = write_report(run, formats=("md", "csv"))
    text = paths["report.md"].read_text(encoding="utf-8")
    assert text.startswith("# quantize: leaderboard report\n")
    titles = [line for line in text.splitlines() if line.startswith("## ")]
    assert titles == ["## Leaderboard", "## Literature view", "## Failed, stopped and missing cells", "## Plots"]
    assert "0 failed, 0 stopped, 0 missing of the 4" in text
    assert len(paths["trials.csv"].read_text().splitlines()) == 1 + 4


def test_the_job_calibrates_and_evaluates_on_its_threads_and_records_them(tmp_path, monkeypatch):
    import torch

    loaded = _loaded()
    monkeypatch.setattr(harness.quantize, "load_model", lambda *args, **kwargs: loaded)
    seen = []
    real = harness.quantize.quantize_

    def quantize_(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return real(*args, **kwargs)

    monkeypatch.setattr(harness.quantize, "quantize_", quantize_)
    before = torch.get_num_threads()
    threads = 1 if before > 1 else 2
    rows = quantize_into(QuantizeJob(models=("vit_mnist",), ptq=("minmax",), bits=("W8A8",), calib_size=8,
                                     threads=threads), tmp_path / "run")
    assert seen == [threads] and rows[0]["threads"] == threads
    assert torch.get_num_threads() == before  # restored

