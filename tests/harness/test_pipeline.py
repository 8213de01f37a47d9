"""run_trial on a tiny task: rows, baselines, shared fine-tunes; grid expansion and scheduling; typed specs."""

import dataclasses
import json

import pytest

import harness.pipeline as pipeline
from arnq.arms import arm_config
from arnq.finetune import FinetuneConfig
from arnq.ptq import ptq_config
from harness.grid import build_trials, trial_id
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
    spec = build_trials(["vit_mnist"], ["W4A4"], [("minmax", {})], [("plain", {})], [0], FT, calib_size=32)[0]
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
    other = pipeline.run_trial(dataclasses.replace(spec, ptq=ptq_config("percentile", "W4A4", calib_size=32)))
    assert not other["trial_cached"] and other["finetune_cached"]


def test_a_ptq_aware_arnq_row_records_its_in_training_target_runs(toy):
    spec = build_trials(["vit_mnist"], ["W4A4"], [("repq_vit", {})], [("arnq", {})], [0], FT, calib_size=32)[-1]
    assert spec.arm.arm == "arnq"
    row = pipeline.run_trial(spec)
    shadow = json.loads(row["arm_stats"])["ptq_shadow"]
    assert shadow["refreshes"] == 1 and shadow["seconds"] > 0  # at install; 4 steps: no other run due
    assert json.loads(pipeline.run_trial(build_trials(["vit_mnist"], ["W4A4"], [("repq_vit", {})], [], [0], FT,
                                                      calib_size=32)[0])["arm_stats"]) == {}


def test_grid_rows_and_baselines(toy):
    specs = build_trials(["vit_mnist"], ["W4A4"], [("minmax", {})], [("kure", {"lam": [0.1, 1.0]})], [0, 1], FT,
                         calib_size=32)
    assert len(specs) == 2 * 3  # plain is added as the baseline
    rows = [pipeline.run_trial(spec) for spec in specs]
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

    specs = build_trials(models=["vit_mnist", "minilm_rt"], bits=["W4A4", "W8A8"], ptq=[("minmax", {}), ("omse", {})],
                         arms=[("plain", {}), ("arnq", {})], seeds=[0], finetune=FinetuneConfig(epochs=1))
    order = schedule(specs)
    assert sorted(map(trial_id, order)) == sorted(map(trial_id, specs))  # a permutation
    keys = [get_key(s) for s in order]
    n = len(set(keys))
    assert len(set(keys[:n])) == n  # every distinct fine-tune before any trial that reuses one
    assert [s.model for s in order[:4]] == ["vit_mnist", "minilm_rt", "vit_mnist", "minilm_rt"]


def test_trial_specs_round_trip_exactly_through_json():
    """Every spec of every committed space: to_dict -> JSON -> from_dict gives the same spec and the same ids."""
    import json

    from harness.cli import spaces_dir
    from harness.space import load_space

    specs = [s for path in sorted(spaces_dir().glob("*.yaml")) for s in load_space(path).trials()]
    assert len(specs) > 100
    for spec in specs:
        again = pipeline.TrialSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
        assert again == spec and trial_id(again) == trial_id(spec) and pipeline.get_key(again) == pipeline.get_key(spec)


def test_a_spec_refuses_names_where_configs_belong():
    with pytest.raises(TypeError, match="give a PTQ config"):
        pipeline.TrialSpec(model="vit_mnist", ptq="minmax")
    with pytest.raises(TypeError, match="give an arm config"):
        pipeline.TrialSpec(model="vit_mnist", ptq=ptq_config("minmax", "W4A4"), arm="arnq")


def test_arnq_shares_a_fine_tune_between_targets_with_the_same_quantizers():
    """Uniform-grid ARNQ sizes noise from the target's scheme: GPTQ and min-max share it (min-max per-tensor
    activations), OMSE and percentile-auto RepQ-ViT do not; PTQ-aware ARNQ is per target; plain ignores it."""
    def key(arm, method, **params):
        return pipeline.get_key(pipeline.TrialSpec(model="vit_mnist", ptq=ptq_config(method, "W4A4"),
                                                   arm=arm_config(arm, **params), finetune=FT))

    assert key("arnq", "minmax", delta_observer="target") == key("arnq", "gptq", delta_observer="target")
    assert len({key("arnq", m, delta_observer="target") for m in ("minmax", "omse", "repq_vit", "percentile")}) == 4
    assert len({key("arnq", m) for m in ("minmax", "gptq", "omse", "repq_vit", "percentile")}) == 5
    assert len({key("plain", m) for m in ("minmax", "omse", "repq_vit")}) == 1
    weight_only = arm_config("arnq", target="W", delta_observer="target")
    assert len({pipeline.get_key(pipeline.TrialSpec(model="vit_mnist", ptq=ptq_config(m, "W4A4"), arm=weight_only,
                                                    finetune=FT)) for m in ("minmax", "omse")}) == 1


def test_changing_the_code_behind_a_stage_changes_its_cache_keys(tmp_path, monkeypatch):
    """Fine-tune, trial and FP-checkpoint keys hold a fingerprint of their code: a code edit is a new entry,
    a docstring edit is not."""
    from arnq.cache import code_fingerprint
    from arnq.data import DataConfig, load_data
    from arnq.models import MODELS, fp
    from harness.pipeline import trial_cache_spec

    module = tmp_path / "stage_code_probe.py"
    module.write_text('def f():\n    """Doc."""\n    return 1\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(pipeline, "PIPELINE_CODE", (*pipeline.PIPELINE_CODE, "stage_code_probe"))
    monkeypatch.setattr(fp, "FP_CODE", (*fp.FP_CODE, "stage_code_probe"))
    spec = pipeline.TrialSpec(model="vit_mnist", ptq=ptq_config("minmax", "W4A4"), arm=arm_config("arnq"), finetune=FT)
    vit = MODELS.get("vit_mnist")
    data = load_data(DataConfig(vit.dataset, seed=0))

    def keys():
        code_fingerprint.cache_clear()
        return (pipeline.get_key(spec), json.dumps(trial_cache_spec(spec, "cpu"), sort_keys=True),
                json.dumps(fp.fp_cache_spec(vit, seed=0, data=data), sort_keys=True))

    before = keys()
    module.write_text('def f():\n    """Another doc."""\n    return 1\n')
    assert keys() == before
    module.write_text('def f():\n    """Doc."""\n    return 2\n')
    after = keys()
    assert all(a != b for a, b in zip(after, before, strict=True))


@pytest.mark.slow
def test_the_headline_path_minilm_rt_with_the_default_arnq_arm_and_a_ptq_evaluation(monkeypatch, tmp_path):
    """What users run, end to end at a tiny budget and from an empty cache: the real minilm_rt FP build
    (rotten_tomatoes, 82.25 % at fp_seed 0 with these library versions), a PTQ-aware ARNQ fine-tune
    against RepQ-ViT at W4A4 with its in-training target runs, and the PTQ evaluation on the full test split."""
    monkeypatch.setenv("ARNQ_CACHE", str(tmp_path / "cache"))
    budget = FinetuneConfig(epochs=1, lr=2e-4, batch_size=32, train_subset=128, val_size=64, diagnostics_batches=1,
                            epoch_q_eval=False)
    plain, arnq = build_trials(["minilm_rt"], ["W4A4"], [("repq_vit", {})], [("arnq", {})], [0], budget, calib_size=64)
    rows = {spec.arm.arm: pipeline.run_trial(spec, cache_root=tmp_path / "cache") for spec in (plain, arnq)}
    for arm, row in rows.items():
        assert row["status"] == "ok", row
        assert abs(row["fp_acc"] - 82.25) < 1.5, row  # the FP model trained as the committed results' was
        assert row["ft_acc"] > 75.0 and 60.0 < row["q_acc"] <= row["ft_acc"] + 1.0, (arm, row)
    shadow = json.loads(rows["arnq"]["arm_stats"])["ptq_shadow"]
    assert shadow["refreshes"] >= 1 and shadow["seconds"] > 0  # the noise came from RepQ-ViT's own quantizers
    assert rows["arnq"]["ft_acc"] != rows["plain"]["ft_acc"] or rows["arnq"]["q_acc"] != rows["plain"]["q_acc"]
