"""Benchmark 9: what the cost-aware trial order saves against the round-robin order, from an empty cache.

Both orders are simulated with the estimator's per-trial costs (`harness.plan.trial_costs`:
this machine's timing of each model, FP builds included) on the space's trial slots
(`harness.grid.simulated_wall`); nothing is trained. The real figures (a fresh-cache run
in each order) are in bench/README.md.

    .venv/bin/python -m bench.schedule                         # search_spaces/quickstart.yaml
    .venv/bin/python -m bench.schedule --space FILE --slots 2
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from bench.common import ROOT, markdown


def simulate(space_path: Path, slots: int | None) -> list[dict]:
    from arnq.cache import cache_root
    from harness.costs import measure
    from harness.grid import schedule, simulated_wall
    from harness.plan import CONTENTION, trial_costs
    from harness.space import load_space

    space = load_space(space_path)
    with tempfile.TemporaryDirectory() as tmp:
        empty = Path(tmp)  # nothing cached: every fine-tune, trial and FP build is to run
        threads = max(1, int(space.resources["cpu"]))
        for model in space.models:  # this machine's timings (measured once, cached in the user's cache)
            measure(model, threads=threads, batch_size=space.finetune_of(model).batch_size)
        shutil.copytree(cache_root() / "costs", empty / "costs")
        specs = space.trials()
        costs = trial_costs(space, specs, empty, slots)
    work = sum(costs.seconds.values()) + sum(costs.build.values())
    out = []
    for name, order in (("round-robin (no costs)", schedule(specs)), ("cost order", schedule(specs, costs))):
        wall = CONTENTION * simulated_wall(order, costs)
        out.append({"order": name, "trials": len(specs), "slots": costs.slots, "work min": round(work / 60, 1),
                    "simulated wall min": round(wall / 60, 1),
                    "idle slot-min": round((costs.slots * wall - work) / 60, 1)})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", type=Path, default=ROOT / "search_spaces" / "quickstart.yaml")
    parser.add_argument("--slots", type=int, default=None, help="trial slots (default: CPUs / CPUs per trial)")
    args = parser.parse_args()
    print(markdown(simulate(args.space, args.slots)))


if __name__ == "__main__":
    main()
