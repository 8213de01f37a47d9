"""The cost estimate of `arnq validate`: a cached timing per model, and what the plan adds up from it."""

import dataclasses

import pytest

from harness.costs import ArmTiming, Timing, arm_key, measure, measure_arms
from harness.space import parse_space

BASE = {"name": "t", "models": ["vit_mnist"], "bits": ["W4A4"], "ptq": ["minmax"], "calib_size": 256}


def _timing(**changes):
    base = Timing(model="vit_mnist", threads=1, batch_size=64, train_s=0.002, eval_s=0.0001, qeval_s=0.0002,
                  train_size=4000, test_size=1000, data_name="mnist5k", data_task="mnist", measured_s=1.0, machine="m")
    return dataclasses.replace(base, **changes)


def test_a_timing_is_measured_once_and_then_read_from_the_cache(tmp_path, monkeypatch):
    import harness.costs

    calls = []
    monkeypatch.setattr(harness.costs, "_measure", lambda *a: calls.append(a) or _timing())
    first = measure("vit_mnist", threads=1, batch_size=64, cache_root=tmp_path)
    assert measure("vit_mnist", threads=1, batch_size=64, cache_root=tmp_path) == first
    assert len(calls) == 1
    measure("vit_mnist", threads=2, batch_size=64, cache_root=tmp_path)  # another thread count: measured anew
    assert len(calls) == 2


def test_the_real_measurement_times_training_and_both_evaluations(tmp_path):
    timing = measure("vit_mnist", threads=1, batch_size=64, cache_root=tmp_path)
    assert 0 < timing.eval_s < timing.train_s and timing.qeval_s > 0
    assert (timing.train_size, timing.test_size) == (4000, 1000)


def test_the_estimate_adds_fine_tunes_target_runs_and_trials(tmp_path, monkeypatch):
    import harness.plan

    timing = _timing()
    monkeypatch.setattr(harness.plan, "_timings", lambda space, root: {"vit_mnist": timing})
    monkeypatch.setattr(harness.plan, "_fp_build_s", lambda *a: 0.0)  # vit_mnist is built in seconds; not this test
    monkeypatch.setattr(harness.plan, "_arm_timings", lambda *a: {})  # no arm timed: the fallback constants
    ft = {"epochs": 2, "train_subset": 1000, "val_size": 200, "batch_size": 50, "epoch_q_eval": False}
    plain = harness.plan.make_plan(parse_space({**BASE, "finetune": ft}), cache_root=tmp_path, slots=1)
    aware = harness.plan.make_plan(parse_space({**BASE, "finetune": ft, "arms": ["plain", "arnq"]}), cache_root=tmp_path,
                                   slots=1)
    c = harness.plan.CONTENTION
    ft_plain = 2 * 1000 * 0.002 + 2 * 200 * 0.0001 + 1000 * 0.0001
    trial = harness.plan.CALIB_COST["minmax"] * 256 * 0.0001 + 1000 * 0.0002
    assert plain.cpu_seconds == pytest.approx(c * (ft_plain + trial))
    runs = 1 + 2 + 40 // 25  # install, two epoch starts, every 25 of the 40 steps
    ft_arnq = ft_plain + 2 * 1000 * 0.002 * (harness.plan.ARM_STEP_COST["arnq"] - 1) + runs * 64 * 0.0001
    assert aware.cpu_seconds == pytest.approx(c * (ft_plain + ft_arnq + 2 * trial))
    assert "measured on this machine" in aware.source


def test_an_fp_checkpoint_counts_only_when_it_must_be_trained(tmp_path):
    from arnq.models import MODELS
    from harness.plan import _fp_build_s

    assert _fp_build_s("vit_fmnist", _timing(), 0, tmp_path) == 0.0  # shipped
    text = _timing(model="minilm_rt", train_size=10092, test_size=2716, data_name="rotten_tomatoes",
                   data_task="rotten_tomatoes")
    spec = MODELS.get("minilm_rt")
    expected = spec.recipe.epochs * spec.fp_train_subset * text.train_s + 2716 * text.eval_s
    assert _fp_build_s("minilm_rt", text, 0, tmp_path) == pytest.approx(expected)


def test_an_arm_timed_here_prices_its_own_steps_and_target_runs(tmp_path, monkeypatch):
    import harness.plan
    from arnq.arms import arm_config

    timing = _timing()
    ft = {"epochs": 2, "train_subset": 1000, "val_size": 200, "batch_size": 50, "epoch_q_eval": False}
    space = parse_space({**BASE, "ptq": ["minmax", "hadamard"], "finetune": ft, "arms": ["arnq"]})
    rotation = arm_key(arm_config("arnq"), next(s.ptq for s in space.trials() if s.ptq.method == "hadamard"))
    measured = {("vit_mnist", rotation): ArmTiming(model="vit_mnist", threads=1, batch_size=50, key=rotation,
                                                   label="arnq -> hadamard", step_ratio=2.5, run_s=3.0,
                                                   measured_s=1.0, machine="m")}
    monkeypatch.setattr(harness.plan, "_timings", lambda space, root: {"vit_mnist": timing})
    monkeypatch.setattr(harness.plan, "_fp_build_s", lambda *a: 0.0)
    monkeypatch.setattr(harness.plan, "_arm_timings", lambda *a: measured)
    plan = harness.plan.make_plan(space, cache_root=tmp_path, slots=1)
    c = harness.plan.CONTENTION
    fixed = 2 * 200 * 0.0001 + 1000 * 0.0001  # validation passes and the test evaluation
    runs = 1 + 2 + 40 // 25
    toward_rotation = 2 * 1000 * 0.002 * 2.5 + fixed + runs * 3.0  # the timing's ratio and run seconds
    toward_minmax = 2 * 1000 * 0.002 * harness.plan.ARM_STEP_COST["arnq"] + fixed + runs * 64 * 0.0001  # not timed
    plain = 2 * 1000 * 0.002 + fixed  # the baseline's one fine-tune, shared by both methods
    trials = 2 * (harness.plan.CALIB_COST["minmax"] + harness.plan.CALIB_COST["hadamard"]) * 256 * 0.0001 + 4 * 0.2
    assert plan.cpu_seconds == pytest.approx(c * (toward_rotation + toward_minmax + plain + trials))
    assert "1 arm x target step cost(s) timed here" in plan.source


def test_arm_timings_are_measured_once_per_arm_and_target(tmp_path):
    from arnq.arms import arm_config
    from arnq.ptq import ptq_config

    aware, grid = arm_config("arnq"), arm_config("arnq", delta_observer="minmax")
    w4a4, w4a4_again = ptq_config("minmax", "W4A4"), ptq_config("minmax", "W4A4")
    # a schedule or mask rate changes what a step computes with, not what it costs: one timing
    assert arm_key(aware, w4a4) == arm_key(arm_config("arnq", warmup_frac=0.5, bernoulli_p=0.5), w4a4_again)
    assert arm_key(aware, w4a4) != arm_key(aware, ptq_config("repq_vit", "W4A4")) != arm_key(grid, w4a4)
    first = measure_arms("vit_mnist", [(aware, w4a4), (grid, w4a4)], threads=1, batch_size=32, cache_root=tmp_path)
    timed_aware, timed_grid = first[arm_key(aware, w4a4)], first[arm_key(grid, w4a4)]
    assert timed_aware.step_ratio > 0 and timed_aware.run_s > 0  # PTQ-aware: the target's in-training runs
    assert timed_grid.step_ratio > 0 and timed_grid.run_s == 0  # the min-max grid runs no target
    assert timed_aware.label == "arnq -> minmax" and timed_grid.label == "arnq (minmax grid) -> minmax"
    again = measure_arms("vit_mnist", [(aware, w4a4_again)], threads=1, batch_size=32, cache_root=tmp_path)
    assert again == {timed_aware.key: timed_aware}  # read back from the cache, not measured anew


def test_a_timing_taken_on_a_busy_cpu_is_kept_with_a_warning_naming_how_to_re_time_it(tmp_path, monkeypatch,
                                                                                         caplog):
    import os

    import harness.costs

    monkeypatch.setattr(harness.costs, "_measure", lambda *a: _timing())
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    monkeypatch.setattr(os, "getloadavg", lambda: (0.3, 0.3, 0.3))  # one core idle: a 1-thread timing is fair
    with caplog.at_level("WARNING", logger="harness.costs"):
        measure("vit_mnist", threads=1, batch_size=64, cache_root=tmp_path)
    assert not caplog.records
    monkeypatch.setattr(os, "getloadavg", lambda: (2.0, 2.0, 2.0))  # both cores taken by other work
    with caplog.at_level("WARNING", logger="harness.costs"):
        timing = measure("vit_mnist", threads=2, batch_size=64, cache_root=tmp_path)
    assert timing == _timing()  # kept: an estimate on the high side beats none
    [record] = caplog.records
    assert "load 2.0 on 2 cores" in record.getMessage() and "delete" in record.getMessage()
    assert str(tmp_path) in record.getMessage()


def test_arm_timings_taken_on_a_busy_cpu_are_kept_with_a_warning_naming_their_cache_files(tmp_path, monkeypatch,
                                                                                          caplog):
    import os

    import harness.costs
    from arnq.arms import arm_config
    from arnq.ptq import ptq_config

    def fake(name, threads, todo, batch_size, start):
        return {key: ArmTiming(model=name, threads=threads, batch_size=batch_size, key=key, label="arnq",
                               step_ratio=1.3, run_s=0.5, measured_s=1.0, machine="m") for key in todo}

    monkeypatch.setattr(harness.costs, "_measure_arms", fake)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    aware, w4a4 = arm_config("arnq"), ptq_config("minmax", "W4A4")
    monkeypatch.setattr(os, "getloadavg", lambda: (0.3, 0.3, 0.3))
    with caplog.at_level("WARNING", logger="harness.costs"):
        measure_arms("vit_mnist", [(aware, w4a4)], threads=1, cache_root=tmp_path)
    assert not caplog.records
    monkeypatch.setattr(os, "getloadavg", lambda: (1.9, 1.9, 1.9))  # another job holds both cores
    repq = ptq_config("repq_vit", "W4A4")
    with caplog.at_level("WARNING", logger="harness.costs"):
        timed = measure_arms("vit_mnist", [(aware, w4a4), (aware, repq)], threads=1, cache_root=tmp_path)
    assert set(timed) == {arm_key(aware, w4a4), arm_key(aware, repq)}  # kept, the cached one read back
    [record] = caplog.records
    message = record.getMessage()
    assert "arm(s) of vit_mnist" in message and "load 1.9 on 2 cores" in message
    assert arm_key(aware, repq) in message and arm_key(aware, w4a4) not in message  # only the one timed now


def test_block_reconstruction_is_priced_per_calibration_and_per_optimised_example():
    from arnq.ptq import ptq_config
    from harness.plan import RECON_COST, calibration_forwards, optimised_examples

    per_example, per_optimised = RECON_COST["brecq"]["vit"]
    small, large = ptq_config("brecq", "W4A4", calib_size=256), ptq_config("brecq", "W4A4", calib_size=1024)
    assert calibration_forwards(large) - calibration_forwards(small) == pytest.approx(per_example * 768)
    longer = ptq_config("brecq", "W4A4", calib_size=256, iters=1000)
    assert calibration_forwards(longer) - calibration_forwards(small) == pytest.approx(per_optimised * 500 * 32)
    qdrop = ptq_config("qdrop", "W4A4", calib_size=256)
    vit = RECON_COST["qdrop"]["vit"]
    assert calibration_forwards(qdrop) == pytest.approx(vit[0] * 256 + vit[1] * 500 * 32)
    # at the default sizes the optimisation, not the calibration set, is most of it
    for method, per_family in RECON_COST.items():
        default = ptq_config(method, "W4A4")
        for family, (per_example, per_optimised) in per_family.items():
            assert per_optimised * optimised_examples(default) > per_example * default.resolved_calib_size, (method, family)
    minmax = ptq_config("minmax", "W4A4", calib_size=256)
    assert calibration_forwards(minmax) == 256


def test_an_in_training_reconstruction_is_priced_at_its_in_training_settings(tmp_path, monkeypatch):
    import harness.plan
    from arnq.ptq.brecq import BRECQ

    monkeypatch.setattr(harness.plan, "_timings", lambda space, root: {"vit_mnist": _timing()})
    monkeypatch.setattr(harness.plan, "_fp_build_s", lambda *a: 0.0)
    monkeypatch.setattr(harness.plan, "_arm_timings", lambda *a: {})  # no arm timed: the run is priced, not timed
    ft = {"epochs": 2, "train_subset": 1000, "val_size": 200, "batch_size": 50, "epoch_q_eval": False}
    space = {**BASE, "ptq": ["brecq"], "finetune": ft}
    plain = harness.plan.make_plan(parse_space(space), cache_root=tmp_path, slots=1)
    aware = harness.plan.make_plan(parse_space({**space, "arms": ["plain", "arnq"]}), cache_root=tmp_path, slots=1)
    c = harness.plan.CONTENTION
    per_example, per_optimised = harness.plan.RECON_COST["brecq"]["vit"]  # vit_mnist
    steps = BRECQ.shadow_params["iters"] + BRECQ.shadow_params["act_iters"]
    run = (per_example * 64 + per_optimised * steps * 32) * 0.0001
    trial = (per_example * 256 + per_optimised * (500 + 125) * 32) * 0.0001
    ft_plain = 2 * 1000 * 0.002 + 2 * 200 * 0.0001 + 1000 * 0.0001
    ft_arnq = ft_plain + 2 * 1000 * 0.002 * (harness.plan.ARM_STEP_COST["arnq"] - 1) + (1 + 2 + 40 // 25) * run
    assert plain.cpu_seconds == pytest.approx(c * (ft_plain + 1000 * 0.0002 + trial))
    assert aware.cpu_seconds == pytest.approx(c * (ft_plain + ft_arnq + 2 * (1000 * 0.0002 + trial)))


def test_the_reconstruction_prices_are_the_committed_fit():
    import importlib.util
    from pathlib import Path

    from harness.plan import RECON_COST

    path = Path(__file__).parents[2] / "results" / "ptq_methods" / "calib_cost.py"
    spec = importlib.util.spec_from_file_location("calib_cost", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    fits = module.fit()
    assert fits.keys() == RECON_COST.keys()
    for method, per_family in fits.items():
        assert per_family.keys() == RECON_COST[method].keys(), method
        for family, (per_example, per_optimised) in per_family.items():
            assert RECON_COST[method][family] == (round(per_example), round(per_optimised, 1)), (method, family)


def test_each_family_is_priced_by_its_own_fit_and_the_others_as_vit():
    from arnq.ptq import ptq_config
    from harness.plan import RECON_COST, calibration_forwards

    brecq = ptq_config("brecq", "W4A4", calib_size=1024)
    text, vit = RECON_COST["brecq"]["bert"], RECON_COST["brecq"]["vit"]
    assert calibration_forwards(brecq, "bert") == pytest.approx(text[0] * 1024 + text[1] * (500 + 125) * 32)
    assert calibration_forwards(brecq, "swin") == calibration_forwards(brecq, "deit") == calibration_forwards(brecq)
    assert calibration_forwards(brecq) == pytest.approx(vit[0] * 1024 + vit[1] * (500 + 125) * 32)
    minmax = ptq_config("minmax", "W4A4", calib_size=256)
    assert calibration_forwards(minmax, "bert") == calibration_forwards(minmax) == 256
