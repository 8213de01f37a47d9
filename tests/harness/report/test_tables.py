"""The report's tables from the golden rows: best-arm marks, the grid, missing cells, older rows."""

import json

from harness.report import ALL, build_report
from harness.store import read_rows
from tests.harness.report.golden_run import GOLDEN, HARDWARE, NOW


def test_best_arm_mark_needs_the_highest_mean_improvement_above_zero_and_marks_ties():
    report = build_report(read_rows(GOLDEN / "rows.jsonl"), json.loads((GOLDEN / "space.json").read_text()))
    board = report.leaderboard
    best = board[board["best"] & (board["metric"] == "improvement")]
    assert sorted(zip(best["model"], best["bits"], best["ptq"], best["variant"], best["mean"], strict=True)) == sorted([
        ("vit_mnist", "W8A8", "minmax", "arnq", 0.1),
        ("vit_mnist", "W4A4", "minmax", "arnq", 5.5),
        ("vit_mnist", "W4A4", "percentile", "arnq", 2.0),  # a tie: both marked
        ("vit_mnist", "W4A4", "percentile", "quanttune", 2.0),
        ("minilm_rt", "W8A8", "minmax", "quanttune", 0.2),
        ("minilm_rt", "W8A8", "percentile", "quanttune", 0.15),
        ("minilm_rt", "W4A4", "minmax", "arnq", 9.0),
    ])  # vit W8A8 percentile (best -0.10) and minilm W4A4 percentile (best 0.00) have no mark
    # the failed plain seed leaves one paired seed: improvement over n=1, q_acc over n=2
    cell = board[(board["model"] == "vit_mnist") & (board["bits"] == "W4A4") & (board["ptq"] == "percentile")
                 & (board["arm"] == "arnq")].set_index("metric")
    assert (cell.loc["q_acc", "n"], cell.loc["improvement", "n"]) == (2, 1)


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
                                 ("arnq",)),)
    thesis = report.thesis
    overall = thesis[(thesis["model"] == ALL) & (thesis["bits"] == ALL) & (thesis["ptq"] == ALL)]
    assert overall.set_index("variant")["mean"].to_dict() == {"arnq": 1.9688, "quanttune": 0.8438}


def test_a_run_of_the_plain_arm_alone_shows_q_acc_and_drop_and_no_arm_comparison():
    """arnq quantize's rows (ft_acc = fp_acc, no fine-tune): FP, q_acc and drop per cell; no thesis or fine-tune table."""
    from harness.report.render import sections

    accs = {("W8A8", 0): (80.0, 79.5), ("W8A8", 1): (80.2, 79.9), ("W4A4", 0): (80.0, 70.0), ("W4A4", 1): (80.2, 71.0)}
    rows = [{"model": "vit_mnist", "bits": bits, "ptq": "minmax", "arm": "plain", "arm_params": "{}", "seed": seed,
             "fp_acc": fp, "ft_acc": fp, "q_acc": q, "status": "ok", "trial_id": f"{bits}-{seed}"}
            for (bits, seed), (fp, q) in accs.items()]
    report = build_report(rows, name="quantize", now=NOW, hardware=HARDWARE)
    assert report.views["leaderboard"].to_dict("records") == [
        {"model": "vit_mnist", "bits": "W8A8", "ptq": "minmax", "FP": "80.10", "q_acc": "79.70 ± 0.28 (n=2)",
         "drop": "0.40 ± 0.14 (n=2)"},
        {"model": "vit_mnist", "bits": "W4A4", "ptq": "minmax", "FP": "80.10", "q_acc": "70.50 ± 0.71 (n=2)",
         "drop": "9.60 ± 0.57 (n=2)"},
    ]
    assert report.views["literature"].to_dict("records") == [
        {"model": "vit_mnist", "FP": "80.10", "minmax W8A8": "79.70 (\u22120.40)", "minmax W4A4": "70.50 (\u22129.60)"}]
    assert report.thesis.empty and report.views["finetune"].empty and not report.compares_arms
    assert [title for title, _, _ in sections(report)] == ["Leaderboard", "Literature view",
                                                          "Failed, stopped and missing cells"]


def test_noise_schedules_read_the_typed_config_of_new_rows():
    """Rows of typed trials carry the resolved arm in config['arm']; a default schedule is named there only."""
    from arnq.arms import arm_config
    from arnq.ptq import ptq_config
    from harness.pipeline import TrialSpec
    from harness.report.axes import Axes, canonical
    from harness.report.tables import _noise_schedules

    spec = TrialSpec(model="vit_mnist", ptq=ptq_config("minmax", "W4A4"), arm=arm_config("arnq", warmup_frac=0.3))
    row = {"status": "ok", "arm": "arnq", "arm_params": json.dumps(spec.arm.changed_params()),
           "config": json.dumps(spec.to_dict())}
    axes = Axes(models=(), bits=(), ptqs=(), variants=(("arnq", canonical(row["arm_params"])),), seeds=())
    assert _noise_schedules([row], axes) == (("linear", {"alpha_max": 1.0, "warmup_frac": 0.3, "n_steps": 4},
                                              ("arnq",)),)


def _row(ptq, arm, seed, q_acc, params="{}"):
    return {"model": "m", "bits": "W4A4", "ptq": ptq, "arm": arm, "arm_params": params, "seed": seed,
            "status": "ok", "fp_acc": 80.0, "ft_acc": 79.0, "q_acc": q_acc}


def test_best_combination_pairs_the_best_arm_with_the_best_plain_ptq_by_seed():
    from scipy.stats import ttest_rel

    plain_repq, arnq_repq = [70.0, 71.0, 72.0], [72.0, 73.0, 75.0]
    rows = [_row("minmax", "plain", s, q) for s, q in enumerate([50.0, 52.0, 54.0])]
    rows += [_row("repq_vit", "plain", s, q) for s, q in enumerate(plain_repq)]
    rows += [_row("repq_vit", "arnq", s, q) for s, q in enumerate(arnq_repq)]
    rows += [_row("minmax", "arnq", s, q) for s, q in enumerate([60.0, 61.0, 62.0])]
    rows += [_row("repq_vit", "quanttune", s, q) for s, q in enumerate([71.0, 70.0, 73.0])]
    best = build_report(rows).best.iloc[0]
    assert (best["best_plain_ptq"], best["best_arm_combination"]) == ("repq_vit", "arnq + repq_vit")
    assert (best["paired_diff"], best["n"]) == (round(7 / 3, 4), 3)
    assert best["p_value"] == round(ttest_rel(arnq_repq, plain_repq).pvalue, 4) < 0.05
    assert best["verdict"] == "better (p < 0.05)"
    # one seed of the arm missing: the pair is formed over the seeds both have
    view = build_report([r for r in rows if not (r["arm"] == "arnq" and r["seed"] == 2)]).views["best"].iloc[0]
    assert view["paired Δ"] == "2.00 ± 0.00 (n=2)"


def test_best_combination_says_when_the_difference_is_noise_or_untestable():
    rows = [_row("minmax", "plain", s, q) for s, q in enumerate([70.0, 72.0, 71.0])]
    rows += [_row("minmax", "arnq", s, q) for s, q in enumerate([71.0, 71.5, 71.2])]
    assert build_report(rows).best.iloc[0]["verdict"] == "within seed noise"
    one = [r for r in rows if r["seed"] == 0]
    assert build_report(one).best.iloc[0]["verdict"] == "fewer than two paired seeds: no test"
    assert build_report([r for r in rows if r["arm"] == "plain"]).best.empty  # nothing to compare
