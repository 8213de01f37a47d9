"""`arnq sweep`: the search space on Ray Tune, a thin adapter over `harness.pipeline.run_trial`.

Every cell becomes one Tune trial (grid search over TrialSpec dicts, distinct
fine-tunes first). Trials report the fine-tuning epochs (`q_val_acc`, the validation
accuracy after the target PTQ) so ASHA can stop bad fine-tunes; ASHA ranks trials
only against trials of the same (model, bits, PTQ method) cell, and never stops the
plain baseline. Rows are appended to the run's results store as trials finish, so a
killed driver loses nothing and `--resume` re-runs only what is missing.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from harness.grid import schedule, trial_id
from harness.pipeline import TrialSpec, run_trial
from harness.space import Space

log = logging.getLogger(__name__)

METRIC = "q_val_acc"


def trainable(config: Mapping[str, Any]) -> None:
    """Ray Tune function trainable: one cell of the grid."""
    import torch
    from ray import tune

    spec = TrialSpec.from_dict(config["trial"])
    torch.set_num_threads(max(1, int(config.get("threads", 1))))
    run_dir = Path(config["run_dir"])

    def report(metrics: dict[str, Any]) -> None:
        if metrics.get("stage") == "finetune":
            tune.report({k: v for k, v in metrics.items() if isinstance(v, (int, float))} | {"trial_id": trial_id(spec)})

    cache = Path(config["cache_root"]) if config.get("cache_root") else None
    row = run_trial(spec, report, device=config.get("device", "cpu"), cache_root=cache,
                    checkpoint_root=run_dir / "finetune_checkpoints")
    row["trial_id"] = trial_id(spec)
    tune.report({"row": json.dumps(row), "done_row": 1, "q_acc": row["q_acc"]})


def cell_key(config: Mapping[str, Any]) -> str:
    trial = config["trial"]
    return f"{trial['model']}|{trial['bits']}|{trial['ptq']}"


def make_scheduler(space: Space) -> Any:
    """FIFO, or ASHA per (model, bits, PTQ) cell that never stops the plain baseline."""
    from ray.tune.schedulers import AsyncHyperBandScheduler, FIFOScheduler, TrialScheduler

    params = dict(space.scheduler)
    if params.pop("name") != "asha":
        return FIFOScheduler()
    params.pop("metric", None)

    class CellASHA(FIFOScheduler):
        """One AsyncHyperBand bracket per cell, so only like is compared with like."""

        def __init__(self) -> None:
            super().__init__()
            self.cells: dict[str, AsyncHyperBandScheduler] = {}

        def _cell(self, trial: Any) -> AsyncHyperBandScheduler | None:
            if trial.config["trial"]["arm"] == "plain":
                return None
            key = cell_key(trial.config)
            if key not in self.cells:
                self.cells[key] = AsyncHyperBandScheduler(
                    time_attr="epoch", metric=METRIC, mode="max", max_t=space.finetune.epochs,
                    grace_period=params.get("grace_period", 1), reduction_factor=params.get("reduction_factor", 2),
                )
            return self.cells[key]

        def on_trial_add(self, tune_controller: Any, trial: Any) -> None:
            cell = self._cell(trial)
            if cell is not None:
                cell.on_trial_add(tune_controller, trial)

        def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
            cell = self._cell(trial)
            if cell is None or METRIC not in result:
                return TrialScheduler.CONTINUE
            return cell.on_trial_result(tune_controller, trial, result)

        def on_trial_complete(self, tune_controller: Any, trial: Any, result: dict) -> None:
            cell = self._cell(trial)
            if cell is not None and result and METRIC in result:
                cell.on_trial_complete(tune_controller, trial, result)

    return CellASHA()


def _store_callback(rows_path: Path, counts: dict[str, int], total: int, start: float,
                    on_row: Callable[[dict], None] | None):
    from ray.tune import Callback

    class Store(Callback):
        """Appends each finished, stopped or failed trial's row to the results store (fsynced)."""

        def __init__(self) -> None:
            self.written: set[str] = set()
            if rows_path.exists():
                self.written = {json.loads(line)["trial_id"] for line in rows_path.read_text().splitlines() if line}

        def _write(self, row: dict[str, Any]) -> None:
            if row["trial_id"] in self.written:
                return
            self.written.add(row["trial_id"])
            with rows_path.open("a") as out:
                out.write(json.dumps(row) + "\n")
                out.flush()
                os.fsync(out.fileno())
            counts[row["status"]] = counts.get(row["status"], 0) + 1
            done = sum(counts.values())
            eta = (time.perf_counter() - start) / max(done, 1) * (total - done)
            log.info("%d/%d trials (%s); ETA %.0f s; last: %s %s %s %s seed=%s q_acc=%s", done, total,
                     ", ".join(f"{k} {v}" for k, v in sorted(counts.items())), eta, row.get("model"), row.get("bits"),
                     row.get("ptq"), row.get("arm"), row.get("seed"), row.get("q_acc"))
            if on_row is not None:
                on_row(row)

        def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
            if result.get("done_row"):
                self._write(json.loads(result["row"]))

        def _ended(self, trial: Any, status: str, error: str | None = None) -> None:
            spec = TrialSpec.from_dict(trial.config["trial"])
            last = trial.last_result or {}
            row = {**spec.to_dict(), "arm_params": json.dumps(dict(spec.arm_params), sort_keys=True),
                   "trial_id": trial_id(spec), "status": status, "stopped_at_epoch": last.get("epoch"),
                   "q_val_acc": last.get(METRIC)}
            if error:
                row["error"] = error
            self._write(row)

        def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            if not (trial.last_result or {}).get("done_row"):
                self._ended(trial, "stopped")

        def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            self._ended(trial, "failed", str(getattr(trial, "error_file", "") or "trial raised"))

    return Store()


def run_sweep(
    space: Space,
    run_dir: Path,
    *,
    resume: bool = False,
    address: str | None = None,
    on_row: Callable[[dict], None] | None = None,
    cache_root: Path | None = None,
) -> list[dict[str, Any]]:
    """Run every cell of `space` on Ray Tune; returns the rows of the results store.

    `cache_root` (default: $ARNQ_CACHE or ~/.cache/arnq of the driver) is handed to every
    trial, so on a cluster it must be a path all nodes see.
    """
    from arnq.cache import cache_root as default_cache_root

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray
    from ray import tune

    run_dir.mkdir(parents=True, exist_ok=True)
    rows_path = run_dir / "rows.jsonl"
    specs = schedule(space.trials())
    done = set()
    if rows_path.exists():
        done = {json.loads(line)["trial_id"] for line in rows_path.read_text().splitlines() if line}
    todo = [s for s in specs if trial_id(s) not in done]
    log.info("%s: %d trials, %d already in the store, %d to run", space.name, len(specs), len(done), len(todo))
    if todo:
        if not ray.is_initialized():
            ray.init(address=address or os.environ.get("RAY_ADDRESS"), include_dashboard=False,
                     log_to_driver=False, configure_logging=False)
        cpu = space.resources["cpu"]
        config = {"trial": tune.grid_search([s.to_dict() for s in todo]), "run_dir": str(run_dir.resolve()),
                  "threads": max(1, int(cpu)), "device": "cuda" if space.resources["gpu"] else "cpu",
                  "cache_root": str(Path(cache_root or default_cache_root()).resolve())}
        counts: dict[str, int] = {}
        store = _store_callback(rows_path, counts, len(todo), time.perf_counter(), on_row)
        tuner = tune.Tuner(
            tune.with_resources(trainable, {"cpu": cpu, "gpu": space.resources["gpu"]}),
            param_space=config,
            tune_config=tune.TuneConfig(scheduler=make_scheduler(space), reuse_actors=True),
            run_config=tune.RunConfig(
                name=space.name, storage_path=str((run_dir / "ray").resolve()),
                failure_config=tune.FailureConfig(max_failures=2), callbacks=[store], verbose=0,
            ),
        )
        tuner.fit()
    return [json.loads(line) for line in rows_path.read_text().splitlines() if line]
