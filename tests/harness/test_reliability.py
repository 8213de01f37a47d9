"""Fault injection: killed workers, killed drivers, lost nodes, diverged fine-tunes,
unwritable run directories and leaked secrets; each case asserts what survives."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from arnq.cache import linked_cache
from harness.pipeline import FINETUNE_KIND, TRIAL_KIND
from harness.space import parse_space
from harness.store import StoreError
from harness.sweep import run_sweep

pytestmark = [pytest.mark.ray, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]


def _wait_for(predicate, timeout: float = 300.0, every: float = 0.2) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(every)
    raise AssertionError("timed out waiting for the fault point")


def _parent(pid: int) -> int:
    """The parent PID of `pid` (0 once it is gone): the field after the parenthesised command in /proc/PID/stat."""
    try:
        return int((Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return 0


def _descends_from(pid: int, ancestor: int) -> bool:
    while pid > 1:
        if pid == ancestor:
            return True
        pid = _parent(pid)
    return False


def _trial_processes() -> list[int]:
    """PIDs of the Ray workers of this test process's own cluster currently running a Tune trial (process title
    'ray::ImplicitFunc...'): never those of another sweep on the same machine."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="ignore")
        except OSError:
            continue
        if cmd.startswith("ray::ImplicitFunc") and _descends_from(int(proc.name), os.getpid()):
            pids.append(int(proc.name))
    return pids


def test_a_worker_killed_mid_finetune_is_retried_and_resumes_from_its_checkpoint(ray_local, vit_mnist_cache, tmp_path):
    space = parse_space({"name": "kill", "models": ["vit_mnist"], "bits": ["W4A4"], "ptq": ["minmax"],
                         "arms": ["plain"], "seeds": [0], "calib_size": 64,
                         "finetune": {"epochs": 6, "batch_size": 32, "train_subset": 1024, "val_size": 64,
                                      "epoch_q_eval": False, "diagnostics_batches": 1}})
    run = tmp_path / "run"
    checkpoints = run / "finetune_checkpoints"
    killed: list[int] = []

    def killer() -> None:
        _wait_for(lambda: any(checkpoints.glob("*/state.json")))  # an epoch is checkpointed
        for pid in _trial_processes():
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    rows = run_sweep(space, run, cache_root=vit_mnist_cache)
    thread.join(timeout=5)
    assert killed, "no trial worker was found to kill"
    assert len(rows) == 1 and rows[0]["status"] == "ok"  # retried (FailureConfig), exactly one row
    assert rows[0]["finetune_resumed_from_epoch"] is not None  # from the checkpoint, not from scratch
    assert len((run / "rows.jsonl").read_text().splitlines()) == 1


def test_a_diverged_finetune_is_a_failed_row_with_its_reason_and_the_sweep_goes_on(
    ray_local, vit_mnist_cache, tmp_path, monkeypatch
):
    from harness.report import write_report

    monkeypatch.setenv("WANDB_API_KEY", "sk-test-never-written-0123456789")
    space = parse_space({"name": "nan", "models": ["vit_mnist"], "bits": ["W4A4"], "ptq": ["minmax"],
                         "arms": ["plain", {"name": "diverge", "at_step": 2}], "seeds": [0], "calib_size": 64,
                         "plugins": ["tests.harness.fault_arms"],
                         "finetune": {"epochs": 1, "batch_size": 64, "train_subset": 256, "val_size": 64,
                                      "diagnostics_batches": 1},
                         "wandb": {"project": "arnq-test", "mode": "offline"}})
    run = tmp_path / "run"
    rows = {r["arm"]: r for r in run_sweep(space, run, cache_root=vit_mnist_cache)}
    assert rows["plain"]["status"] == "ok"
    assert rows["diverge"]["status"] == "failed"
    assert rows["diverge"]["error"].startswith("FloatingPointError") and "nan" in rows["diverge"]["error"].lower()
    paths = write_report(run, formats=("md", "csv"))
    assert "| failed" in paths["report.md"].read_text()
    # the W&B key in the environment appears nowhere in the run: rows, configs, W&B files, Tune state
    for path in run.rglob("*"):
        if path.is_file():
            assert b"sk-test-never-written" not in path.read_bytes(), path


def test_an_unwritable_run_directory_is_a_clear_error_before_any_trial(ray_local, tmp_path):
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("a file where the run directory's parent should be")
    space = parse_space({"name": "x", "models": ["vit_mnist"], "bits": ["W4A4"], "ptq": ["minmax"]})
    with pytest.raises(StoreError, match="cannot write the run directory .*pass --out"):
        run_sweep(space, blocker / "run")


SPACE_YAML = """
name: interrupt
models: [vit_mnist]
bits: [W3A3, W2A4]
ptq: [minmax]
arms: [plain, {name: arnq, schedule: [linear, cosine]}, quanttune]
finetune: {epochs: 3, lr: 1.0e-4, batch_size: 32, train_subset: 512, val_size: 64, diagnostics_batches: 1}
seeds: [0]
calib_size: 64
resources: {cpu: 1}
"""


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL], ids=["sigint", "sigterm", "sigkill"])
def test_a_killed_driver_resumes_without_rerun_loss_or_duplicate(ray_subprocess_env, tmp_path, sig):
    """SIGINT / SIGTERM: a partial report, the resume command and exit code 130 / 143; SIGKILL: nothing
    written at exit. Either way --resume runs every trial exactly once."""
    space = tmp_path / "interrupt.yaml"
    space.write_text(SPACE_YAML)
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "harness.cli", "sweep", str(space), "--out", str(run)]
    # fine-tunes and trial results start empty (the FP checkpoint is shared): with an earlier run's trials in the
    # cache, every trial would end within seconds and the signal could arrive after the sweep is done
    cache = linked_cache(tmp_path / "cache", ray_subprocess_env["ARNQ_CACHE"], rebuild=(FINETUNE_KIND, TRIAL_KIND))
    env = {**ray_subprocess_env, "ARNQ_CACHE": str(cache)}
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    rows = run / "rows.jsonl"
    _wait_for(lambda: rows.exists() and rows.read_text().count("\n") >= 1)
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=300)
    if sig == signal.SIGKILL:  # Ray's processes of the dead driver: gone with it, or stopped here
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    first = [json.loads(line) for line in rows.read_text().splitlines() if line.strip()]
    assert 1 <= len(first) < 8, out[-3000:]
    if sig != signal.SIGKILL:
        text = " ".join(out.split())  # rich wraps long lines
        assert proc.returncode == 128 + sig, out[-3000:]
        done_first = sum(r["status"] in ("ok", "stopped") for r in first)
        assert f"interrupted: {done_first} of 8 trials done; resume with: arnq sweep {space} --out {run} --resume" in text
        assert "Tuner.restore" not in out
        assert (run / "report" / "report.md").is_file()  # the partial report
        assert all(r["status"] == "ok" for r in first)  # the trials the signal stopped left no row
    done = subprocess.run(cmd + ["--resume"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    lines = [json.loads(line) for line in rows.read_text().splitlines()]
    ids = [r["trial_id"] for r in lines]
    assert len(ids) == len(set(ids)) == 8  # every trial once: none lost, none duplicated
    assert lines[: len(first)] == first  # finished trials kept, not re-run
    assert all(r["status"] == "ok" for r in lines)
    assert (run / "report" / "report.md").is_file()


NODE_LOSS_SCRIPT = textwrap.dedent("""
    import json, sys, threading, time
    from pathlib import Path
    import ray
    from ray.cluster_utils import Cluster
    from harness.space import parse_space
    from harness.sweep import run_sweep

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    worker = cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False, configure_logging=False)
    space = parse_space({"name": "loss", "models": ["vit_mnist"], "bits": ["W4A4", "W3A3"], "ptq": ["minmax"],
                         "arms": ["plain", "quanttune"], "seeds": [0, 1], "calib_size": 64,
                         "finetune": {"epochs": 3, "batch_size": 32, "train_subset": 512, "val_size": 64,
                                      "epoch_q_eval": False, "diagnostics_batches": 1}})
    run = Path(sys.argv[1])
    result = {}
    thread = threading.Thread(target=lambda: result.update(rows=run_sweep(space, run)))
    thread.start()
    rows = run / "rows.jsonl"
    while not (rows.exists() and rows.read_text().strip()):
        time.sleep(0.2)
    cluster.remove_node(worker)  # a preempted machine
    thread.join()
    print("ALIVE", sum(n["Alive"] for n in ray.nodes()))
    ray.shutdown()
    cluster.shutdown()
""")


def test_a_node_lost_mid_sweep_has_its_trials_rescheduled_and_the_sweep_completes(ray_subprocess_env, tmp_path):
    run = tmp_path / "run"
    done = subprocess.run([sys.executable, "-c", NODE_LOSS_SCRIPT, str(run)], env=ray_subprocess_env,
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "ALIVE 1" in done.stdout  # the worker node really went away
    rows = [json.loads(x) for x in (run / "rows.jsonl").read_text().splitlines()]
    assert len(rows) == len({r["trial_id"] for r in rows}) == 8
    assert all(r["status"] == "ok" for r in rows)
