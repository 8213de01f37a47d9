"""The benchmark scripts themselves: quick variants and their helpers (the full benchmarks are not tests)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench import asha, common, fresh_start

ROOT = Path(__file__).resolve().parents[2]


def run_bench(name, *args, timeout):
    """A benchmark as its README runs it: a module, from the repository root."""
    return subprocess.run([sys.executable, "-m", f"bench.{name}", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=timeout)


def test_epochs_run_counts_stopped_trials_to_their_stop_and_cached_fine_tunes_as_free():
    rows = [{"status": "ok", "finetune_cached": False}, {"status": "ok", "finetune_cached": True},
            {"status": "stopped", "stopped_at_epoch": 1}, {"status": "failed"}]
    assert common.epochs_run(rows, 4) == 5


def test_asha_top3_ranks_by_quantized_accuracy_with_arm_params():
    rows = [{"status": "ok", "arm": "plain", "arm_params": "{}", "q_acc": 60.0},
            {"status": "ok", "arm": "arnq", "arm_params": '{"target": "W"}', "q_acc": 70.0},
            {"status": "stopped", "arm": "arnq", "arm_params": '{"target": "A"}', "q_acc": None},
            {"status": "ok", "arm": "quanttune", "arm_params": '{"lam": 0.01}', "q_acc": 65.0}]
    assert [a for a, _ in asha.top(rows)] == ['arnq{"target":"W"}', 'quanttune{"lam":0.01}', "plain"]


def test_dedup_counts_the_tour_fine_tunes():
    out = run_bench("dedup", "--count-only", "--models", "vit_mnist", "minilm_rt", timeout=300)
    assert out.returncode == 0, out.stderr
    assert "tour (vit_mnist, minilm_rt): 72 trials, 16 distinct fine-tunes" in out.stdout


@pytest.mark.ray
@pytest.mark.slow
def test_scale_benchmark_quick_variant(tmp_path):
    out = run_bench("scale", "--trials", "20", "--nodes", "2", "--cpus-per-node", "1", timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.splitlines()[0])
    assert (result["trials"], result["rows"], result["ok"]) == (20, 20, 20)
    assert result["driver_peak_rss_mib"] > 0 and result["store_write_s"] >= 0


def test_fresh_start_compares_the_interleaved_schedule_with_the_grouped_order():
    from harness.grid import schedule
    from harness.space import parse_space

    specs = parse_space(fresh_start.SPACE).trials()
    assert [s.model for s in fresh_start.grouped(specs)] == ["vit_mnist", "vit_mnist", "minilm_rt", "minilm_rt"]
    assert [s.model for s in schedule(specs)] == ["vit_mnist", "minilm_rt", "vit_mnist", "minilm_rt"]
