"""Benchmark 2: what stage caching saves, against a naive sweep that fine-tunes in every trial.

Both runs go through `run_sweep` with fresh fine-tune and trial caches (FP checkpoints
reused). The cached run is the harness as shipped: a fine-tune depends only on (model,
arm + params, seed, fine-tune settings[, target]) and is built once for every PTQ x bits
cell that needs it. The naive run wraps the same trainable so every trial gets its own
empty cache: each trial fine-tunes. Printed: fine-tunes run and wall time of each, and
their ratio.

    .venv/bin/python -m bench.dedup                 # bench/spaces/tour.yaml restricted to vit_mnist
    .venv/bin/python -m bench.dedup --space FILE    # any space (the naive run fine-tunes per trial)
    .venv/bin/python -m bench.dedup --count-only --space bench/spaces/tour.yaml   # counts, no runs
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench.common import ROOT, STAGE_KINDS, fresh_cache, markdown, ray_hygiene


def naive_trainable(config: dict[str, Any]) -> None:
    """The sweep's trainable with a cache of its own: nothing is shared between trials."""
    from arnq.cache import linked_cache
    from harness.sweep import trainable

    shared = Path(config["cache_root"])
    own = linked_cache(shared.parent / "naive" / uuid.uuid4().hex, shared, STAGE_KINDS)
    trainable({**config, "cache_root": str(own)})


def run(space: Any, workdir: Path, naive: bool) -> dict[str, Any]:
    import ray

    from harness.sweep import run_sweep

    cache = fresh_cache(workdir / "cache")
    start = time.perf_counter()
    rows = run_sweep(space, workdir / "run", cache_root=cache, trainable_fn=naive_trainable if naive else None)
    wall = time.perf_counter() - start
    ray.shutdown()
    built = sum(1 for r in rows if r.get("status") == "ok" and not r.get("finetune_cached"))
    return {"run": "naive (fine-tune per trial)" if naive else "stage cache", "trials": len(rows),
            "fine_tunes": built, "wall_s": round(wall, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", type=Path, default=ROOT / "bench" / "spaces" / "tour.yaml")
    parser.add_argument("--models", nargs="+", default=["vit_mnist"], help="restrict the space to these models")
    parser.add_argument("--count-only", action="store_true", help="print trial and fine-tune counts, run nothing")
    args = parser.parse_args()
    from harness.pipeline import get_key
    from harness.space import load_space

    space = load_space(args.space)
    if args.models:
        space = dataclasses.replace(space, models=tuple(m for m in space.models if m in args.models))
    trials = space.trials()
    print(f"{space.name} ({', '.join(space.models)}): {len(trials)} trials, "
          f"{len({get_key(t) for t in trials})} distinct fine-tunes")
    if args.count_only:
        return
    with tempfile.TemporaryDirectory(prefix="arnq-dedup-") as tmp:
        ray_hygiene(Path(tmp) / "home")
        results = [run(space, Path(tmp) / "cached", naive=False), run(space, Path(tmp) / "naive", naive=True)]
    print(markdown(results))
    print(f"\nfine-tunes {results[1]['fine_tunes']} -> {results[0]['fine_tunes']}; wall time ratio cached / naive "
          f"{results[0]['wall_s'] / results[1]['wall_s']:.2f}")


if __name__ == "__main__":
    main()
