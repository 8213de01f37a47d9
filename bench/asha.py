"""Benchmark 3: what ASHA saves on a space with many arms, and whether the leaderboard's top 3 holds.

The same space runs twice through `run_sweep`, each with fresh fine-tune and trial caches
(FP checkpoints reused): once with the space's ASHA scheduler (one bracket per
(model, bits, PTQ) cell, the plain baseline never stopped), once with FIFO. Printed:
fine-tuning epochs run, trials stopped, wall time, and the top 3 arms by quantized
accuracy in each run.

    .venv/bin/python -m bench.asha                  # bench/spaces/asha_many_arms.yaml
    .venv/bin/python -m bench.asha --space FILE
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import ROOT, epochs_run, fresh_cache, markdown, ray_hygiene

DEFAULT_SPACE = ROOT / "bench" / "spaces" / "asha_many_arms.yaml"


def arm_label(row: dict[str, Any]) -> str:
    params = json.loads(row.get("arm_params") or "{}")
    return row["arm"] + (json.dumps(params, sort_keys=True, separators=(",", ":")) if params else "")


def top(rows: list[dict[str, Any]], k: int = 3) -> list[tuple[str, float]]:
    ok = [r for r in rows if r.get("status") == "ok" and r.get("q_acc") is not None]
    ranked = sorted(ok, key=lambda r: (-r["q_acc"], arm_label(r)))
    return [(arm_label(r), r["q_acc"]) for r in ranked[:k]]


def run(space: Any, workdir: Path) -> dict[str, Any]:
    import ray

    from harness.sweep import run_sweep

    cache = fresh_cache(workdir / "cache")
    start = time.perf_counter()
    rows = run_sweep(space, workdir / "run", cache_root=cache)
    wall = time.perf_counter() - start
    ray.shutdown()
    return {"rows": rows, "wall_s": wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", type=Path, default=DEFAULT_SPACE)
    args = parser.parse_args()
    from harness.space import load_space

    space = load_space(args.space)
    if space.scheduler.get("name") != "asha":
        sys.exit(f"{args.space}: scheduler must be asha (the FIFO run is made from it)")
    fifo = dataclasses.replace(space, scheduler={"name": "none"})
    results = {}
    with tempfile.TemporaryDirectory(prefix="arnq-asha-") as tmp:
        ray_hygiene(Path(tmp) / "home")
        for label, sp in (("asha", space), ("fifo", fifo)):
            results[label] = run(sp, Path(tmp) / label)
    epochs = space.finetune.epochs
    table = []
    for label, res in results.items():
        rows = res["rows"]
        table.append({"scheduler": label, "trials": len(rows), "stopped": sum(r["status"] == "stopped" for r in rows),
                      "epochs_run": epochs_run(rows, epochs), "wall_s": round(res["wall_s"], 1),
                      "top3": "; ".join(f"{a} {q}" for a, q in top(rows))})
    print(markdown(table))
    saved_epochs = 1 - table[0]["epochs_run"] / table[1]["epochs_run"]
    saved_wall = 1 - table[0]["wall_s"] / table[1]["wall_s"]
    same = [a for a, _ in top(results["asha"]["rows"])] == [a for a, _ in top(results["fifo"]["rows"])]
    print(f"\nASHA saves {100 * saved_epochs:.0f} % of the epochs and {100 * saved_wall:.0f} % of the wall time; "
          f"top 3 {'unchanged' if same else 'CHANGED'}")


if __name__ == "__main__":
    main()
