"""Ray hygiene (no metadata probe, auth policy) and an end-to-end sweep on Ray Tune."""

import json
import os
from pathlib import Path

import pytest

from harness.space import parse_space
from harness.sweep import run_sweep

pytestmark = pytest.mark.ray


def test_bootstrap_config_stops_the_metadata_probe(ray_home, monkeypatch, tmp_path):
    import requests
    from ray._common.usage import usage_lib

    calls = []
    monkeypatch.setattr(requests, "get", lambda url, **kw: calls.append(url) or (_ for _ in ()).throw(OSError()))
    config = usage_lib.get_cluster_config_to_report(str(ray_home / "ray_bootstrap_config.yaml"))
    assert config.cloud_provider == "local" and calls == []
    usage_lib.get_cluster_config_to_report(str(tmp_path / "missing.yaml"))  # what Ray does without it
    assert any("169.254.169.254" in url for url in calls)  # so the check above can fail


def test_ray_processes_run_with_the_neutralised_home(ray_local, ray_home):
    dashboards = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes()
            if b"dashboard/dashboard.py" in cmdline:
                env = dict(e.split("=", 1) for e in (proc / "environ").read_bytes().decode().split("\0") if "=" in e)
                dashboards.append(env)
        except OSError:
            continue
    assert dashboards, "no Ray dashboard process found"
    assert all(env.get("HOME") == str(ray_home) and env.get("RAY_USAGE_STATS_ENABLED") == "0" for env in dashboards)
    # auth policy: Ray's default token authentication stays on for local instances
    assert (ray_home / ".ray" / "auth_token").is_file() or os.environ.get("RAY_AUTH_MODE") == "disabled"


@pytest.mark.slow
def test_sweep_end_to_end_with_asha_and_resume(ray_local, vit_mnist_cache, tmp_path):
    space = parse_space({
        "name": "t", "models": ["vit_mnist"], "bits": ["W3A3"], "ptq": ["minmax"],
        "arms": ["plain", {"name": "arnq", "schedule": ["linear", "cosine"]}],
        "finetune": {"epochs": 2, "lr": 1.0e-4, "batch_size": 64, "train_subset": 256, "val_size": 64,
                     "diagnostics_batches": 1},
        "seeds": [0], "calib_size": 64, "scheduler": {"name": "asha", "grace_period": 1, "reduction_factor": 2},
    })
    rows = run_sweep(space, tmp_path / "run", cache_root=vit_mnist_cache)
    assert len(rows) == 3 and len({r["trial_id"] for r in rows}) == 3
    by_status = {r["status"] for r in rows}
    assert by_status <= {"ok", "stopped"}
    plain = [r for r in rows if r["arm"] == "plain"]
    assert plain[0]["status"] == "ok"  # the baseline is never stopped
    assert all(r["q_acc"] is not None for r in rows if r["status"] == "ok")
    # a second run finds every trial in the store and runs nothing
    again = run_sweep(space, tmp_path / "run", resume=True, cache_root=vit_mnist_cache)
    assert len(again) == 3
    lines = (tmp_path / "run" / "rows.jsonl").read_text().splitlines()
    assert len(lines) == 3 and all(json.loads(line)["trial_id"] for line in lines)
