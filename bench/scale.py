"""Benchmark 6: the harness at 1k / 5k / 10k trials on a simulated multi-node cluster.

A trivial trainable (it reports a result row at once, as the real one does at its end)
runs through the real sweep machinery: `run_sweep` (grid expansion, fine-tune-first
ordering, the Tune experiment, the results-store callback, Tune's experiment state), on a
`ray.cluster_utils.Cluster` of several logical nodes on this machine. Each trial count
runs in a fresh process so the figures do not mix:

- driver peak RSS (MiB) and its growth per 1k trials,
- results-store write time (the `append_row` calls: one write + fsync per row) and the
  store size,
- experiment-state overhead: Tune's experiment directory size and the sweep's wall
  time per trial (a per-trial figure that rises with N is the super-linear part).

    .venv/bin/python -m bench.scale                       # 1000 5000 10000 trials
    .venv/bin/python -m bench.scale --trials 200 --nodes 2  # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import ROOT, markdown, ray_hygiene


def trivial_trainable(config: dict[str, Any]) -> None:
    """Reports the row of a trial that did no work."""
    from ray import tune

    from harness.grid import trial_id
    from harness.pipeline import TrialSpec, cell_fields
    from harness.sweep import trial_of

    spec = TrialSpec.from_dict(trial_of(config))
    row = {**cell_fields(spec), "status": "ok", "q_acc": 50.0, "fp_acc": 50.0, "ft_acc": 50.0,
           "trial_id": trial_id(spec), "pid": os.getpid(),
           "config": json.dumps(spec.to_dict(), sort_keys=True)}  # a real row carries its config too (similar size)
    tune.report({"row": json.dumps(row), "done_row": 1, "q_acc": 50.0})


def one_run(trials: int, nodes: int, cpus_per_node: int, workdir: Path) -> dict[str, Any]:
    """One sweep of `trials` trivial trials; returns its figures (runs in its own process)."""
    ray_hygiene(workdir / "home")
    import ray
    from ray.cluster_utils import Cluster

    import harness.sweep as sweep
    from harness.space import parse_space

    store_s = [0.0]
    real_append = sweep.append_row

    def timed_append(path: Path, row: dict[str, Any]) -> None:
        start = time.perf_counter()
        real_append(path, row)
        store_s[0] += time.perf_counter() - start

    sweep.append_row = timed_append
    space = parse_space({"name": "scale", "models": ["vit_mnist"], "bits": ["W8A8"], "ptq": ["minmax"],
                         "arms": ["plain"], "seeds": list(range(trials)), "finetune": {"epochs": 1},
                         "scheduler": {"name": "none"}, "resources": {"cpu": 1, "gpu": 0}})
    build_start = time.perf_counter()
    n_specs = len(space.trials())
    build_s = time.perf_counter() - build_start
    # no dashboard: it is not what is measured, takes CPU from the trials and binds a fixed port (8265)
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": cpus_per_node, "include_dashboard": False})
    for _ in range(nodes - 1):
        cluster.add_node(num_cpus=cpus_per_node)
    ray.init(address=cluster.address, include_dashboard=False, log_to_driver=False, configure_logging=False)
    rss_before = sweep.resident_mib() or float("nan")
    run_dir = workdir / "run"
    start = time.perf_counter()
    rows = sweep.run_sweep(space, run_dir, trainable_fn=trivial_trainable)
    wall = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    ray.shutdown()
    cluster.shutdown()
    state = sum(p.stat().st_size for p in (run_dir / "ray").rglob("experiment_state*.json"))
    tune_dir = sum(p.stat().st_size for p in (run_dir / "ray").rglob("*") if p.is_file())
    return {"trials": n_specs, "rows": len(rows), "ok": sum(r["status"] == "ok" for r in rows),
            "pending_cap": os.environ.get("TUNE_MAX_PENDING_TRIALS_PG", "default"),
            "actor_processes": len({r.get("pid") for r in rows}),
            "wall_s": round(wall, 1), "ms_per_trial": round(1000 * wall / n_specs, 1),
            "space_build_s": round(build_s, 2), "store_write_s": round(store_s[0], 2),
            "store_ms_per_row": round(1000 * store_s[0] / max(len(rows), 1), 2),
            "store_mib": round((run_dir / "rows.jsonl").stat().st_size / 2**20, 2),
            "experiment_state_mib": round(state / 2**20, 2), "tune_dir_mib": round(tune_dir / 2**20, 1),
            "driver_rss_before_mib": round(rss_before), "driver_peak_rss_mib": round(peak)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, nargs="+", default=[1000, 5000, 10000])
    parser.add_argument("--nodes", type=int, default=4, help="logical nodes of the simulated cluster")
    parser.add_argument("--cpus-per-node", type=int, default=2)
    parser.add_argument("--pending", default=None,
                        help="TUNE_MAX_PENDING_TRIALS_PG for the runs (default: Tune's own, 200 on a small cluster)")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # child mode: one trial count
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one is not None:
        print("RESULT " + json.dumps(one_run(args.one, args.nodes, args.cpus_per_node, args.workdir)), flush=True)
        return
    results = []
    for n in args.trials:
        with tempfile.TemporaryDirectory(prefix="arnq-scale-") as tmp:
            cmd = [sys.executable, "-m", "bench.scale", "--one", str(n), "--nodes", str(args.nodes),
                   "--cpus-per-node", str(args.cpus_per_node), "--workdir", tmp]
            env = {**os.environ, **({"TUNE_MAX_PENDING_TRIALS_PG": args.pending} if args.pending else {})}
            out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env)
            line = next((ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")), None)
            if line is None:
                sys.exit(f"the {n}-trial run failed (exit {out.returncode}):\n{out.stderr[-3000:]}")
            results.append(json.loads(line[len("RESULT "):]))
            print(json.dumps(results[-1]), flush=True)
    print("\n" + markdown(results))


if __name__ == "__main__":
    main()
