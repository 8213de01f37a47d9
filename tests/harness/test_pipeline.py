"""run_trial and the local grid runner on a tiny task: rows, baselines, shared fine-tunes, resume."""

import dataclasses
import json

import pytest

import harness.pipeline as pipeline
from arnq.finetune import FinetuneConfig
from harness.grid import build_trials, run_grid, trial_id
from harness.report import add_baselines, build_report
from tests.test_finetune import _loaded

FT = FinetuneConfig(epochs=1, lr=1e-3, batch_size=32, train_subset=128, val_size=32, diagnostics_batches=1,
                    epoch_q_eval=False)


@pytest.fixture
def toy(monkeypatch, tmp_path):
    loaded = _loaded()
    loaded.fp_accuracy = 0.5
    monkeypatch.setattr(pipeline, "_loaded", lambda model, fp_seed, device, cache_root=None: loaded)
    monkeypatch.setenv("ARNQ_CACHE", str(tmp_path / "cache"))
    return loaded


def test_run_trial_row_and_finetune_reuse(toy):
    spec = build_trials(["vit_mnist"], ["W4A4"], ["minmax"], [("plain", {})], [0], FT, calib_size=32)[0]
    reports = []
    first = pipeline.run_trial(spec, reports.append)
    assert {"model", "task", "w_bits", "a_bits", "ptq", "arm", "arm_params", "seed", "fp_acc", "ft_acc", "q_acc",
            "status", "wall_s"} <= set(first)
    assert first["status"] == "ok" and first["fp_acc"] == 50.0 and not first["finetune_cached"]
    assert json.loads(first["diagnostics"])["after"]
    assert [r["stage"] for r in reports] == ["finetune", "ptq"]
    assert reports[0]["epoch"] == 1  # epochs done, from 1: ASHA's grace period counts these
    assert not first["trial_cached"]
    again = pipeline.run_trial(spec)  # the whole trial comes from the cache
    assert again["trial_cached"] and again["q_acc"] == first["q_acc"] and again["ft_acc"] == first["ft_acc"]
    other = pipeline.run_trial(dataclasses.replace(spec, ptq="percentile"))  # same fine-tune, new PTQ evaluation
    assert not other["trial_cached"] and other["finetune_cached"]


def test_grid_rows_baselines_and_resume(toy, tmp_path):
    specs = build_trials(["vit_mnist"], ["W4A4"], ["minmax"], [("kure", {"lam": [0.1, 1.0]})], [0, 1], FT,
                         calib_size=32)
    assert len(specs) == 2 * 3  # plain is added as the baseline
    rows_path = tmp_path / "rows.jsonl"
    rows = run_grid(specs[:3], rows_path, workers=0)
    assert len(rows) == 3
    rows = run_grid(specs, rows_path, workers=0)  # the first three are not re-run
    assert len(rows) == 6 and len(rows_path.read_text().splitlines()) == 6
    df = add_baselines(rows)
    plain = df[df.arm == "plain"].set_index("seed")["q_acc"]
    for _, row in df.iterrows():
        assert row["baseline_q_acc"] == plain[row["seed"]]
        assert row["improvement"] == pytest.approx(row["q_acc"] - plain[row["seed"]], abs=0.011)
    board = build_report(rows).leaderboard
    q_acc = board[board["metric"] == "q_acc"]  # per (model, bits, ptq, arm variant), over seeds
    assert len(q_acc) == 3 and all(q_acc["n"] == 2)


def test_schedule_puts_each_fine_tune_first_and_interleaves_the_models():
    from harness.grid import schedule
    from harness.pipeline import get_key

    specs = build_trials(models=["vit_mnist", "minilm_rt"], bits=["W4A4", "W8A8"], ptq=["minmax", "omse"],
                         arms=[("plain", {}), ("arnq", {})], seeds=[0], finetune=FinetuneConfig(epochs=1))
    order = schedule(specs)
    assert sorted(map(trial_id, order)) == sorted(map(trial_id, specs))  # a permutation
    keys = [get_key(s) for s in order]
    n = len(set(keys))
    assert len(set(keys[:n])) == n  # every distinct fine-tune before any trial that reuses one
    assert [s.model for s in order[:4]] == ["vit_mnist", "minilm_rt", "vit_mnist", "minilm_rt"]
