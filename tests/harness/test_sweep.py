"""Ray hygiene (no metadata probe, auth policy) and the sweep on Ray Tune end to end:
ASHA, provenance, W&B offline, reruns, resources, two nodes (faults: test_reliability)."""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

from harness.space import SpaceError, parse_space
from harness.store import cpu_identity
from harness.sweep import run_sweep

pytestmark = pytest.mark.ray
ROOT = Path(__file__).resolve().parents[2]
TINY_FT = {"epochs": 2, "lr": 1.0e-4, "batch_size": 64, "train_subset": 256, "val_size": 64, "diagnostics_batches": 1}


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
    # this test's own Ray instance only: another one on the machine (a user's sweep) has its own HOME
    session = f"--session-dir={ray_local._private.worker._global_node.get_session_dir_path()}".encode()
    dashboards = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes()
            if b"dashboard/dashboard.py" in cmdline and session in cmdline.split(b"\0"):
                env = dict(e.split("=", 1) for e in (proc / "environ").read_bytes().decode().split("\0") if "=" in e)
                dashboards.append(env)
        except OSError:
            continue
    assert dashboards, "no Ray dashboard process found"
    assert all(env.get("HOME") == str(ray_home) and env.get("RAY_USAGE_STATS_ENABLED") == "0" for env in dashboards)
    # auth policy: Ray's default token authentication stays on for local instances
    assert (ray_home / ".ray" / "auth_token").is_file() or os.environ.get("RAY_AUTH_MODE") == "disabled"


def test_resources_no_node_can_hold_are_rejected_before_any_trial(ray_local, tmp_path):
    space = parse_space({"name": "big", "models": ["vit_mnist"], "bits": ["W4A4"], "ptq": ["minmax"],
                         "resources": {"cpu": 64}})
    with pytest.raises(SpaceError, match=r"needs \{cpu: 64, gpu: 0\} but no node has that.*lower resources"):
        run_sweep(space, tmp_path / "run")
    assert not (tmp_path / "run" / "rows.jsonl").exists()


@pytest.mark.slow
def test_sweep_end_to_end_with_asha_wandb_provenance_and_reruns(ray_local, vit_mnist_cache, tmp_path):
    space = parse_space({
        "name": "t", "models": ["vit_mnist"], "bits": ["W3A3"], "ptq": ["minmax"],
        "arms": ["plain", {"name": "arnq", "schedule": ["linear", "cosine"]}],
        "finetune": TINY_FT, "seeds": [0], "calib_size": 64,
        "scheduler": {"name": "asha", "grace_period": 1, "reduction_factor": 2},
        "wandb": {"project": "arnq-test", "mode": "offline"},
    })
    run = tmp_path / "run"
    rows = run_sweep(space, run, cache_root=vit_mnist_cache)
    assert len(rows) == 3 and len({r["trial_id"] for r in rows}) == 3
    assert {r["status"] for r in rows} <= {"ok", "stopped"}
    for row in rows:  # ASHA stops at its rung (after epoch 1 of 2), never after the last epoch
        assert row["status"] == "ok" or row["stopped_at_epoch"] == 1
    plain = [r for r in rows if r["arm"] == "plain"]
    assert plain[0]["status"] == "ok"  # the baseline is never stopped
    for row in rows:
        assert row["space"] == "t" and row["space_hash"] == space.source_hash
        assert json.loads(row["versions"])["torch"] and "git_commit" in row
        if row["status"] == "ok":
            assert row["q_acc"] is not None and row["node_id"]
            assert row["cpu"] == cpu_identity() and row["threads"] == 1  # what bit-for-bit repeatability needs
            config = json.loads(row["config"])
            assert row["arm"] == "plain" or config["arm"]["alpha_max"] == 1.0  # defaults resolved
    # one offline W&B run per trial that reported, under the run directory, with the flat config
    runs = sorted((run / "wandb" / "wandb").glob("offline-run-*"))
    assert len(runs) >= len([r for r in rows if r["status"] == "ok"])
    log_bytes = b"".join(p.read_bytes() for run_ in runs for p in run_.glob("*.wandb"))  # offline: a binary log
    assert b"finetune.lr" in log_bytes and b"vit_mnist-W3A3-minmax-arnq[schedule=cosine]-s0" in log_bytes
    # --resume finds every trial in the store and runs nothing
    again = run_sweep(space, run, resume=True, cache_root=vit_mnist_cache)
    assert [r["trial_id"] for r in again] == [r["trial_id"] for r in rows]
    assert len((run / "rows.jsonl").read_text().splitlines()) == 3
    # a fresh run moves the earlier one aside and finds every fine-tune in the cache
    fresh = run_sweep(space, run, cache_root=vit_mnist_cache)
    assert len(list(tmp_path.glob("run.*"))) == 1
    finished_before = {r["trial_id"] for r in rows if r["status"] == "ok"}
    again_ok = [r for r in fresh if r["trial_id"] in finished_before and r["status"] == "ok"]
    assert again_ok and all(r["trial_cached"] for r in again_ok)  # (an ASHA-stopped trial was never cached)


CLUSTER_SCRIPT = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    from ray.cluster_utils import Cluster
    from harness.space import parse_space
    from harness.sweep import run_sweep

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    import ray
    ray.init(address=cluster.address, log_to_driver=False, configure_logging=False)
    space = parse_space({"name": "two", "models": ["vit_mnist"], "bits": ["W4A4", "W3A3"], "ptq": ["minmax"],
                         "arms": ["plain", "quanttune"], "seeds": [0, 1], "calib_size": 64,
                         "finetune": {"epochs": 1, "batch_size": 64, "train_subset": 256, "val_size": 64,
                                      "diagnostics_batches": 1}})
    rows = run_sweep(space, Path(sys.argv[1]))
    print("NODES", json.dumps(sorted({r["node_id"] for r in rows})), len(ray.nodes()))
    ray.shutdown()
    cluster.shutdown()
""")


@pytest.mark.slow
def test_two_node_cluster_places_trials_on_both_nodes_into_one_store(ray_subprocess_env, tmp_path):
    run = tmp_path / "run"
    done = subprocess.run([sys.executable, "-c", CLUSTER_SCRIPT, str(run)], env=ray_subprocess_env,
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    line = next(line for line in done.stdout.splitlines() if line.startswith("NODES"))
    nodes = json.loads(line.split(" ", 1)[1].rsplit(" ", 1)[0])
    assert len(nodes) == 2  # trials ran on both nodes
    rows = [json.loads(x) for x in (run / "rows.jsonl").read_text().splitlines()]
    assert len(rows) == 8 and all(r["status"] == "ok" for r in rows)



FAKE_SWEEP = textwrap.dedent("""
    import json, sys
    from ray import tune
    import harness.sweep
    from harness.cli import main
    from harness.grid import ended_row
    from harness.pipeline import TrialSpec

    def fake(config):  # a trial that ends at once with a made-up row
        import timm  # noqa: F401  (imports wandb, whose import makes two temp folders in each worker)
        spec = TrialSpec.from_dict(harness.sweep.trial_of(config))
        row = ended_row(spec, "ok", fp_acc=60.0, ft_acc=55.0, q_acc=50.0 + spec.seed)
        tune.report({"row": json.dumps(row), "done_row": 1})

    harness.sweep.trainable = fake
    sys.exit(main(sys.argv[1:]))
""")


def test_a_sweep_with_wandb_leaves_nothing_in_the_temp_directory(ray_home, tmp_path):
    """`arnq sweep` sends its temporary files (W&B's media and artifact folders) to the run directory and
    removes them at exit (Ray's own session folder goes where RAY_TMPDIR says). Without --address it
    starts its own Ray instance, never the cluster last started on the machine (another program's)."""
    space = tmp_path / "wb.yaml"
    space.write_text("name: wb\nmodels: [vit_mnist]\nbits: [W4A4]\nptq: [minmax]\nseeds: [0, 1]\n"
                     "wandb: {project: arnq-bench, mode: offline}\n")
    systmp, run = tmp_path / "systmp", tmp_path / "run"
    systmp.mkdir()
    env = {**os.environ, "HOME": str(ray_home), "TMPDIR": str(systmp), "RAY_USAGE_STATS_ENABLED": "0",
           "WANDB_MODE": "offline", "PYTHONPATH": str(ROOT)}
    env.pop("RAY_ADDRESS", None)
    # Ray's session folder: a short path (its sockets' limit is 107 bytes), where a `ray.cluster_utils.Cluster`
    # or `ray start` elsewhere on the machine left its address; ray.init() with no address would join it
    ray_tmp = Path(tempfile.mkdtemp(prefix="rt", dir=tempfile.gettempdir()))
    (ray_tmp / "ray").mkdir()
    (ray_tmp / "ray" / "ray_current_cluster").write_text("127.0.0.1:9")  # nothing listens there
    env["RAY_TMPDIR"] = str(ray_tmp)
    try:
        done = subprocess.run([sys.executable, "-c", FAKE_SWEEP, "sweep", str(space), "--out", str(run)], env=env,
                              cwd=ROOT, capture_output=True, text=True, timeout=300)
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "2 trials: 2 ok, 0 stopped early by ASHA, 0 failed in" in " ".join(done.stdout.split())
    # the terminal shows the harness's lines only: no Tune experiment box or TensorBoard hint, no W&B banner
    for foreign in ("Configuration for experiment", "TensorBoard", "wandb:"):
        assert foreign not in done.stdout + done.stderr, (foreign, done.stdout[-3000:] + done.stderr[-3000:])
    assert list((run / "wandb" / "wandb").glob("offline-run-*"))
    assert list(systmp.iterdir()) == []
    assert not (run / "tmp").exists()
