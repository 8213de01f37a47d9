"""A fresh sweep's start: FP checkpoints built by the first trials, model-interleaved order vs grouped.

On an empty cache the first trial of each model builds its FP checkpoint and any other
trial of that model waits on the build's lock. The sweep's schedule interleaves the
models' first fine-tunes so the builds run side by side; the grouped order (every
fine-tune of the first model, then the next model's) is what it replaced. The same small
space (both embedded models x plain and QuantTune at W8A8 min-max, no ASHA) runs once in
each order, each with an empty cache of its own, so both FP checkpoints are built in
both runs. Printed: wall time per order and the ratio.

    .venv/bin/python -m bench.fresh_start          # ~35 minutes on a 2-core CPU
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.common import markdown, ray_hygiene

SPACE = {"name": "fresh_start", "models": ["vit_mnist", "minilm_rt"], "bits": ["W8A8"], "ptq": ["minmax"],
         "arms": ["plain", {"name": "quanttune", "lam": 1.0e-3}], "seeds": [0], "calib_size": 128,
         "finetune": {"epochs": 2, "lr": 1.0e-4, "batch_size": 32, "train_subset": 500, "val_size": 200,
                      "diagnostics_batches": 2},
         "scheduler": {"name": "none"}, "resources": {"cpu": 1, "gpu": 0}}


def grouped(specs: Sequence[Any]) -> list[Any]:
    """The order the schedule had before: each distinct fine-tune first, in grid order (model by model)."""
    from harness.pipeline import get_key

    first, rest, seen = [], [], set()
    for spec in specs:
        key = get_key(spec)
        (rest if key in seen else first).append(spec)
        seen.add(key)
    return first + rest


def run(order: str, workdir: Path) -> dict[str, Any]:
    import ray

    import harness.sweep as sweep
    from harness.grid import schedule
    from harness.space import parse_space

    space = parse_space(SPACE)
    sweep.schedule = grouped if order == "grouped" else schedule
    try:
        start = time.perf_counter()
        rows = sweep.run_sweep(space, workdir / "run", cache_root=workdir / "cache")  # empty: FP models built
        wall = time.perf_counter() - start
    finally:
        sweep.schedule = schedule
        ray.shutdown()
    order_run = [f"{s.model}/{s.arm}" for s in (grouped if order == "grouped" else schedule)(space.trials())]
    return {"order": order, "trial order": ", ".join(order_run), "trials": len(rows),
            "ok": sum(r["status"] == "ok" for r in rows), "wall_s": round(wall, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="arnq-fresh-start-") as tmp:
        ray_hygiene(Path(tmp) / "home")
        results = [run(order, Path(tmp) / order) for order in ("interleaved", "grouped")]
    print(markdown(results))
    print(f"\nwall time ratio interleaved / grouped {results[0]['wall_s'] / results[1]['wall_s']:.2f}")


if __name__ == "__main__":
    main()
