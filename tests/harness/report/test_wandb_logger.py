"""The W&B report run: offline, under the run directory, with every table, plot and the summary."""

import json

from harness.report import write_report
from tests.harness.report.golden_run import GOLDEN, HARDWARE, NOW, make_run


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
    assert b"avg_improvement/arnq" in log and b"1.9688" in log
