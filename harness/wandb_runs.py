"""One W&B run per trial, written by one background thread of the sweep's driver.

Ray's `WandbLoggerCallback` starts a Ray actor per trial, which imports wandb and
starts its service before the run opens: seconds of CPU per trial that, on a small
machine, come out of the trials' own time (bench/README.md, benchmark 1). Here every
run is opened in the driver's process with `reinit="create_new"` (several runs at once
on one wandb service), from a single thread fed by a queue, so Tune's event loop never
waits on W&B and a W&B failure is logged, never raised into the sweep.

The callback is pickled with Tune's experiment state; the thread, the queue and the
open runs are not part of that state (a restored sweep opens fresh runs).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Mapping
from typing import Any

from ray.tune import Callback

log = logging.getLogger(__name__)

#: result keys never sent to W&B: the row itself and Tune's bookkeeping
EXCLUDED = frozenset({"row", "done_row", "trial_id", "timestamp", "pid", "date", "hostname", "node_ip",
                      "time_this_iter_s", "time_since_restore", "iterations_since_restore", "done"})


def _settings(wandb: Any) -> Any:
    """Settings of a trial's run: it lives in the driver, so it must not capture the driver's
    console (Tune's status table) nor sample the driver's system metrics as the trial's, and
    it is silent (72 trials would print over a thousand lines of W&B banners; the sweep says
    once where the runs are)."""
    return wandb.Settings(silent=True, console="off", x_disable_stats=True)


class WandbRuns(Callback):
    def __init__(self, *, project: str, group: str, mode: str, directory: str, entity: str | None = None,
                 config_fn: Callable[[Mapping[str, Any]], dict[str, Any]],
                 name_fn: Callable[[Mapping[str, Any]], str], finish_timeout_s: float = 30.0) -> None:
        self.init_kwargs = {"project": project, "group": group, "mode": mode, "dir": directory,
                            **({"entity": entity} if entity else {})}
        self.config_fn = config_fn
        self.name_fn = name_fn
        self.finish_timeout_s = finish_timeout_s
        self._queue: queue.Queue | None = None
        self._thread: threading.Thread | None = None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_queue"] = state["_thread"] = None
        return state

    # -- Tune hooks (driver's event loop: only enqueue) -------------------------------
    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._put(("init", trial.trial_id, self.config_fn(trial.config), self.name_fn(trial.config)))

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        metrics = {k: v for k, v in result.items()
                   if k not in EXCLUDED and isinstance(v, (int, float)) and not isinstance(v, bool)}
        if metrics:
            self._put(("log", trial.trial_id, metrics))

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._put(("finish", trial.trial_id, 0))

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._put(("finish", trial.trial_id, 1))

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        self.close()

    # -- the writer thread -------------------------------------------------------------
    def _put(self, item: tuple) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._queue = queue.Queue()
            self._thread = threading.Thread(target=self._work, args=(self._queue,), name="arnq-wandb", daemon=True)
            self._thread.start()
        self._queue.put(item)

    def close(self) -> None:
        """Finish every open run and wait (at most `finish_timeout_s`) for the writer to end."""
        if self._thread is None:
            return
        self._queue.put(None)
        self._thread.join(self.finish_timeout_s)
        finished = not self._thread.is_alive()
        self._thread = self._queue = None
        if not finished:
            log.warning("W&B: runs still finishing after %.0f s; leaving them to the wandb service",
                        self.finish_timeout_s)
            return
        import wandb

        # `finish()` returns before the wandb service has flushed a run's file (seen on a busy
        # machine: an offline run file holding only its header); shutting the service down
        # flushes every run, so the files are complete (ready for `wandb sync`) when the sweep
        # returns. Skipped while the user's own run is open: teardown would finish it too.
        if wandb.run is None:
            try:
                wandb.teardown()
            except Exception as err:
                log.warning("W&B teardown failed: %s: %s", type(err).__name__, err)

    def _work(self, items: queue.Queue) -> None:
        import wandb

        runs: dict[str, Any] = {}
        while True:
            item = items.get()
            if item is None:
                break
            kind, trial_id, *rest = item
            try:
                if kind == "init":
                    if trial_id in runs:  # a retried trial goes on logging into its run
                        continue
                    config, name = rest
                    runs[trial_id] = wandb.init(**self.init_kwargs, name=name, config=config, reinit="create_new",
                                                settings=_settings(wandb))
                elif kind == "log" and trial_id in runs:
                    runs[trial_id].log(rest[0])
                elif kind == "finish" and trial_id in runs:
                    runs.pop(trial_id).finish(exit_code=rest[0])
            except Exception as err:  # W&B trouble is reported, never allowed to stop the sweep
                log.warning("W&B %s for trial %s failed: %s: %s", kind, trial_id, type(err).__name__, err)
        for trial_id, run in runs.items():
            try:
                run.finish()
            except Exception as err:
                log.warning("W&B finish for trial %s failed: %s: %s", trial_id, type(err).__name__, err)
