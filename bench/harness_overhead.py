"""Benchmark 1: harness overhead, a sweep's wall time against the ideal of its trials' compute.

Runs a space through `run_sweep` with fresh fine-tune and trial caches (FP checkpoints
reused from the user's cache), then reads every trial's compute time from the Tune
experiment (`time_total_s`: the trainable's own running time, fine-tune + PTQ + eval,
ASHA-stopped trials included). Ideal = sum of compute / concurrent trial slots.
Overhead = wall / ideal - 1 (target: within 10 % on bench/spaces/tour.yaml (the former quickstart) on 2 cores).

Also measured, to say where per-trial fixed cost goes: Ray start, a fresh worker's
start plus the pipeline imports, and loading each model from the cache in a fresh
process (what a trial pays when its actor is not reused).

    .venv/bin/python -m bench.harness_overhead                        # bench/spaces/tour.yaml
    .venv/bin/python -m bench.harness_overhead --rerun default default:nowandb   # + all-cached reruns
    .venv/bin/python -m bench.harness_overhead --models vit_mnist --rerun default 2 default:nowandb
"""

from __future__ import annotations

import argparse
import dataclasses
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import ROOT, fresh_cache, markdown, ray_hygiene


def trial_compute(run_dir: Path, name: str) -> list[float]:
    """time_total_s of every trial of the run's Tune experiments."""
    from ray.tune import ExperimentAnalysis

    seconds = []
    for exp in sorted((run_dir / "ray").glob(f"{name}*")):
        frame = ExperimentAnalysis(str(exp.resolve())).dataframe()
        if "time_total_s" in frame:
            seconds += [float(s) for s in frame["time_total_s"].fillna(0)]
    return seconds


def worker_start_s() -> tuple[float, float]:
    """(a fresh Ray worker's start plus `import harness.pipeline`, the imports alone), in seconds."""
    import ray

    @ray.remote(num_cpus=1)
    def imports() -> float:
        start = time.perf_counter()
        import harness.pipeline  # noqa: F401

        return time.perf_counter() - start

    start = time.perf_counter()
    inside = ray.get(imports.remote())
    return time.perf_counter() - start, inside


def model_load_s(model: str, cache: Path) -> float:
    """Loading `model` from the cache in a fresh process (after its imports)."""
    code = ("import time, sys; from pathlib import Path; from harness.pipeline import _loaded; "
            "t = time.perf_counter(); _loaded(sys.argv[1], 0, 'cpu', Path(sys.argv[2])); "
            "print(time.perf_counter() - t)")
    out = subprocess.run([sys.executable, "-c", code, model, str(cache)], capture_output=True, text=True, cwd=ROOT)
    if out.returncode:
        raise RuntimeError(out.stderr[-2000:])
    return float(out.stdout.strip().splitlines()[-1])


def sweep(space: Any, run_dir: Path, cache: Path, pending: str = "default") -> dict[str, Any]:
    """One run of `space`; `pending` is TUNE_MAX_PENDING_TRIALS_PG ('default': Tune's own, 200 on a
    small cluster); with ':nowandb' appended the space's W&B logging is off."""
    import os

    import ray

    from harness.sweep import run_sweep

    label = pending
    pending, _, flag = pending.partition(":")
    if flag == "nowandb":
        space = dataclasses.replace(space, wandb={})
    elif flag:
        raise SystemExit(f"--pending/--rerun {label!r}: the only flag is ':nowandb' (e.g. default:nowandb)")

    if pending != "default":
        os.environ["TUNE_MAX_PENDING_TRIALS_PG"] = pending
    start = time.perf_counter()
    try:
        rows = run_sweep(space, run_dir, cache_root=cache)
    finally:
        os.environ.pop("TUNE_MAX_PENDING_TRIALS_PG", None)
    wall = time.perf_counter() - start
    slots = int(ray.cluster_resources().get("CPU", 1) // max(space.resources["cpu"], 1e-9))
    compute = trial_compute(run_dir, space.name)
    ideal = sum(compute) / slots
    return {"pending": label, "wandb": bool(space.wandb and space.wandb.get("mode") != "disabled"),
            "trials": len(rows), "ok": sum(r["status"] == "ok" for r in rows),
            "stopped": sum(r["status"] == "stopped" for r in rows), "slots": slots, "wall_s": round(wall, 1),
            "sum_compute_s": round(sum(compute), 1), "ideal_s": round(ideal, 1),
            "overhead_pct": round(100 * (wall / ideal - 1), 1),
            "fixed_s_per_trial": round((wall * slots - sum(compute)) / max(len(compute), 1), 2),
            "actor_processes": len({(r.get("node_id"), r.get("worker_pid")) for r in rows if r.get("worker_pid")})}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", type=Path, default=ROOT / "bench" / "spaces" / "tour.yaml")
    parser.add_argument("--models", nargs="+", default=None, help="restrict the space to these models")
    parser.add_argument("--pending", nargs="+", default=["default"],
                        help="TUNE_MAX_PENDING_TRIALS_PG per run, each with fresh stage caches ('default': Tune's "
                             "own; e.g. --pending default 2)")
    parser.add_argument("--rerun", nargs="*", default=None, metavar="PENDING",
                        help="then run the space again from the first run's warm cache (every trial a cache hit: "
                             "what is left is the harness's own cost), once per PENDING value (default: default); "
                             "PENDING:nowandb turns the space's W&B logging off for that run")
    args = parser.parse_args()
    from harness.space import load_space

    space = load_space(args.space)
    if args.models:
        space = dataclasses.replace(space, models=tuple(m for m in space.models if m in args.models))
    with tempfile.TemporaryDirectory(prefix="arnq-overhead-") as tmp:
        tmp = Path(tmp)
        ray_hygiene(tmp / "home")
        import ray

        start = time.perf_counter()
        ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False)
        ray_start = time.perf_counter() - start
        worker_total, worker_imports = worker_start_s()
        runs = []
        for i, pending in enumerate(args.pending):
            cache = fresh_cache(tmp / f"cache{i}")
            runs.append({"run": "fresh stage caches", **sweep(space, tmp / f"run{i}", cache, pending)})
        for i, pending in enumerate(args.rerun or (["default"] if args.rerun is not None else [])):
            runs.append({"run": "all cached", **sweep(space, tmp / f"rerun{i}", tmp / "cache0", pending)})
        ray.shutdown()
        loads = {m: model_load_s(m, cache) for m in space.models}
    print(markdown(runs))
    print(f"\nRay start {ray_start:.1f} s; a fresh worker + pipeline imports {worker_total:.1f} s "
          f"(imports {worker_imports:.1f} s); model load from cache in a fresh process: "
          + ", ".join(f"{m} {s:.1f} s" for m, s in loads.items()))


if __name__ == "__main__":
    main()
