"""The driver-side W&B callback: one offline run per trial, flat config, metrics, errors never raised."""

import pickle
from types import SimpleNamespace

from arnq.arms import arm_config
from arnq.finetune import FinetuneConfig
from arnq.ptq import ptq_config
from harness.pipeline import TrialSpec
from harness.sweep import flat_config, trial_name
from harness.wandb_runs import WandbRuns

TRIAL = TrialSpec(model="vit_mnist", ptq=ptq_config("minmax", "W4A4"), arm=arm_config("arnq", schedule="cosine"),
                  finetune=FinetuneConfig(epochs=1, lr=1e-4)).to_dict()


def _callback(tmp_path):
    return WandbRuns(project="arnq-test", group="g", mode="offline", directory=str(tmp_path),
                     config_fn=flat_config, name_fn=trial_name)


def test_one_offline_run_per_trial_with_the_flat_config_and_its_metrics(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    cb = _callback(tmp_path)
    trials = [SimpleNamespace(trial_id=f"t{i}", config={"trial": {**TRIAL, "seed": i}}) for i in range(2)]
    for trial in trials:
        cb.on_trial_start(0, trials, trial)
        cb.on_trial_result(0, trials, trial, {"epoch": 1, "q_val_acc": 0.9, "row": "{}", "done": False, "ok": True})
    cb.on_trial_complete(0, trials, trials[0])
    cb.on_trial_error(0, trials, trials[1])
    cb.on_experiment_end(trials)
    runs = sorted((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 2
    data = b"".join(p.read_bytes() for run in runs for p in run.glob("*.wandb"))
    assert b"finetune.lr" in data and b"q_val_acc" in data
    assert b"vit_mnist-W4A4-minmax-arnq[schedule=cosine]-s0" in data and b"-s1" in data


def test_pickles_without_its_thread_and_a_wandb_failure_is_only_logged(tmp_path, monkeypatch, caplog):
    cb = _callback(tmp_path)
    cb.init_kwargs["mode"] = "no-such-mode"  # wandb.init raises
    trial = SimpleNamespace(trial_id="t0", config={"trial": TRIAL})
    cb.on_trial_start(0, [trial], trial)
    cb.on_trial_result(0, [trial], trial, {"epoch": 1})
    restored = pickle.loads(pickle.dumps(cb))  # Tune saves callbacks with the experiment state
    assert restored._thread is None and restored.init_kwargs["project"] == "arnq-test"
    cb.close()
    assert "W&B init for trial t0 failed" in caplog.text
    assert not list(tmp_path.glob("wandb/offline-run-*"))


def test_the_service_is_shut_down_after_the_sweep_unless_the_user_has_a_run_open(tmp_path, monkeypatch):
    import wandb

    monkeypatch.setenv("WANDB_MODE", "offline")
    calls = []
    monkeypatch.setattr(wandb, "teardown", lambda *a, **k: calls.append("teardown"))
    trial = SimpleNamespace(trial_id="t0", config={"trial": TRIAL})
    for user_run in (object(), None):
        monkeypatch.setattr(wandb, "run", user_run)
        cb = _callback(tmp_path)
        cb.on_trial_start(0, [trial], trial)
        cb.on_trial_complete(0, [trial], trial)
        cb.on_experiment_end([trial])
        assert calls == ([] if user_run is not None else ["teardown"])
