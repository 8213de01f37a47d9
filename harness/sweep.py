"""`arnq sweep`: the search space on Ray Tune, a thin adapter over `harness.pipeline.run_trial`.

Every cell becomes one Tune trial (grid search over TrialSpec dicts, distinct
fine-tunes first). Trials report the fine-tuning epochs (`q_val_acc`, the validation
accuracy after the target PTQ) so ASHA can stop bad fine-tunes; ASHA ranks trials
only against trials of the same (model, bits, PTQ method) cell, and never stops the
plain baseline. Rows are appended to the run's results store as trials finish, so a
killed driver loses nothing and `--resume` re-runs only what is missing.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from harness.grid import ended_row, schedule, trial_id
from harness.pipeline import TrialSpec, run_trial
from harness.plan import trial_costs
from harness.space import Space, SpaceError, import_plugin
from harness.store import (
    FINISHED,
    ROWS,
    StoreError,
    append_row,
    finished_ids,
    machine_fields,
    provenance,
    read_rows,
)

log = logging.getLogger(__name__)

METRIC = "q_val_acc"


class SweepInterrupted(Exception):
    """The sweep stopped on SIGINT or SIGTERM; what had ended is in the store, the rest resumes with --resume."""

    def __init__(self, signum: int, rows: list[dict[str, Any]], total: int) -> None:
        super().__init__(f"interrupted by {signal.Signals(signum).name}")
        self.signum, self.rows, self.total = signum, rows, total

    @property
    def exit_code(self) -> int:
        """128 + the signal number, as a shell reports a process the signal ended: 130 SIGINT, 143 SIGTERM."""
        return 128 + self.signum


class _QuietTuneHints(logging.Filter):
    """Drops Tune's own stop and restore messages (`Tuner.restore(...)`): the CLI says how to resume."""

    HINTS = ("Tuner.restore", "Stop signal received", "Trials did not complete")

    def filter(self, record: logging.LogRecord) -> bool:
        return not any(hint in record.getMessage() for hint in self.HINTS)


@contextlib.contextmanager
def graceful_signals() -> Iterator[list[int]]:
    """Within the block, SIGINT and SIGTERM stop the sweep gracefully: the first asks Tune to end
    (its SIGUSR1 path: running trials are stopped, the experiment state saved, `fit` returns) and
    is recorded in the yielded list; a second aborts at once (KeyboardInterrupt). Outside the main
    thread nothing is installed."""
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def handler(signum: int, frame: Any) -> None:
        tune_listens = callable(signal.getsignal(signal.SIGUSR1))  # installed by Tune while fit runs
        received.append(signum)
        if len(received) > 1 or not tune_listens:
            raise KeyboardInterrupt
        log.warning("%s: stopping the running trials and saving the sweep (send it again to abort at once)",
                    signal.Signals(signum).name)
        os.kill(os.getpid(), signal.SIGUSR1)

    quiet = _QuietTuneHints()
    tune_loggers = [logging.getLogger(name) for name in ("ray.tune.tune", "ray.tune")]
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)}
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)  # until Tune's fit installs its own
    for s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, handler)
    for logger in tune_loggers:
        logger.addFilter(quiet)
    try:
        with scoped_env(TUNE_DISABLE_SIGINT_HANDLER="1"):
            yield received
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        for logger in tune_loggers:
            logger.removeFilter(quiet)


def trainable(config: Mapping[str, Any]) -> None:
    """Ray Tune function trainable: one cell of the grid."""
    import ray
    import torch
    from ray import tune

    for module in config.get("plugins", ()):
        import_plugin(module)  # the arms or PTQ methods the spec may name
    spec = TrialSpec.from_dict(trial_of(config))
    torch.set_num_threads(max(1, int(config.get("threads", 1))))
    run_dir = Path(config["run_dir"])

    def report(metrics: dict[str, Any]) -> None:
        if metrics.get("stage") == "finetune":
            tune.report({k: v for k, v in metrics.items() if isinstance(v, (int, float))} | {"trial_id": trial_id(spec)})

    cache = Path(config["cache_root"]) if config.get("cache_root") else None
    try:
        row = run_trial(spec, report, device=config.get("device", "cpu"), cache_root=cache,
                        checkpoint_root=run_dir / "finetune_checkpoints")
    except FloatingPointError as err:  # a diverged fine-tune: deterministic, so recorded rather than retried
        row = ended_row(spec, "failed", error=f"{type(err).__name__}: {err}")
    row["trial_id"] = trial_id(spec)
    row.update(machine_fields())
    row["node_id"] = ray.get_runtime_context().get_node_id()
    row["worker_pid"] = os.getpid()  # distinct (node_id, worker_pid) pairs = actors the sweep started
    release_memory()
    mib = resident_mib()
    row["worker_rss_gib"] = None if mib is None else round(mib / 1024, 2)  # what a reused worker keeps between trials
    tune.report({"row": json.dumps(row), "done_row": 1, **({"q_acc": row["q_acc"]} if row.get("q_acc") is not None else {})})



def release_memory() -> None:
    """Free what a finished trial left behind in this (reused) worker process: collect cyclic
    garbage and return freed heap pages to the OS (glibc `malloc_trim`; a no-op elsewhere).

    Reused Tune workers grew to 10-11 GiB after about eight MiniLM trials each in one sweep
    (results/arms_first/README.md) while the same trials run in one plain process stay flat;
    the rows' `worker_rss_gib` records what each worker holds after this.
    """
    import ctypes
    import ctypes.util
    import gc

    gc.collect()
    libc = ctypes.util.find_library("c")
    if libc and "libc.so" in libc:
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(libc).malloc_trim(0)


def resident_mib() -> float | None:
    """This process's resident memory in MiB (None where /proc is not available)."""
    try:
        with open("/proc/self/status") as status:
            kib = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
    except (OSError, StopIteration, ValueError):
        return None
    return kib / 1024


def trial_of(config: Mapping[str, Any]) -> dict[str, Any]:
    """The TrialSpec dict of a Tune trial config.

    The grid holds each spec as a JSON string, not a dict: Tune's grid-search generator
    deep-copies the whole grid for every trial it creates, cheap for strings (cost: bench/README.md,
    section 6)."""
    trial = config["trial"]
    return json.loads(trial) if isinstance(trial, str) else dict(trial)


def cell_key(trial: Mapping[str, Any]) -> str:
    """(model, PTQ config) of a TrialSpec dict: the cell ASHA compares trials within."""
    return f"{trial['model']}|{json.dumps(trial['ptq'], sort_keys=True)}"


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

        def _cell(self, trial: Any, spec: Mapping[str, Any] | None = None) -> AsyncHyperBandScheduler | None:
            spec = spec or trial_of(trial.config)
            if spec["arm"]["arm"] == "plain":
                return None
            key = cell_key(spec)
            if key not in self.cells:
                self.cells[key] = AsyncHyperBandScheduler(
                    time_attr="epoch", metric=METRIC, mode="max", max_t=spec["finetune"]["epochs"],
                    grace_period=params.get("grace_period", 1), reduction_factor=params.get("reduction_factor", 2),
                )
            return self.cells[key]

        def on_trial_add(self, tune_controller: Any, trial: Any) -> None:
            cell = self._cell(trial)
            if cell is not None:
                cell.on_trial_add(tune_controller, trial)

        def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
            spec = trial_of(trial.config)  # decoded once per result: this runs on every report
            cell = self._cell(trial, spec)
            if cell is None or METRIC not in result:
                return TrialScheduler.CONTINUE
            decision = cell.on_trial_result(tune_controller, trial, result)
            if result.get("epoch", 0) >= spec["finetune"]["epochs"]:
                # ASHA answers STOP once time_attr reaches max_t; here that is the end of
                # fine-tuning, and the trial must go on to its PTQ evaluation
                return TrialScheduler.CONTINUE
            return decision

        def on_trial_complete(self, tune_controller: Any, trial: Any, result: dict) -> None:
            cell = self._cell(trial)
            if cell is not None and result and METRIC in result:
                cell.on_trial_complete(tune_controller, trial, result)

    return CellASHA()


def _callback_base() -> type:
    from ray.tune import Callback

    return Callback


class Store(_callback_base()):
    """Appends each finished, stopped or failed trial's row to the results store and logs progress.

    Picklable (Tune saves it with the experiment, and `Tuner.restore` brings it back): the
    state that matters is re-read from the store in `setup`.
    """

    def __init__(self, rows_path: Path, total: int, extra: Mapping[str, Any],
                 on_row: Callable[[dict], None] | None = None) -> None:
        self.rows_path = Path(rows_path)
        self.total = total
        self.extra = dict(extra)
        self.on_row = on_row
        self._reset()

    def _reset(self) -> None:
        self.written = finished_ids(self.rows_path)
        self.counts: dict[str, int] = {}
        self.running: set[str] = set()  # trial ids; kept by the start/end hooks (O(1) per event, not O(trials))
        self.start = time.time()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["running"] = set()
        state["on_row"] = None  # a driver-side hook; a restored sweep gets a fresh one
        return state

    def setup(self, *args: Any, **info: Any) -> None:
        self._reset()

    def _write(self, row: dict[str, Any]) -> None:
        if row["trial_id"] in self.written:
            return
        row = {**row, **self.extra}
        append_row(self.rows_path, row)
        if row["status"] in FINISHED:
            self.written.add(row["trial_id"])
        self.counts[row["status"]] = self.counts.get(row["status"], 0) + 1
        log.info("%s; last: %s %s %s %s seed=%s %s q_acc=%s", self.progress(), row.get("model"), row.get("bits"),
                 row.get("ptq"), row.get("arm"), row.get("seed"), row["status"], row.get("q_acc"))
        if self.on_row is not None:
            self.on_row(row)

    def progress(self) -> str:
        done = sum(self.counts.values())
        elapsed = time.time() - self.start
        eta = f"ETA {_duration(elapsed / done * (self.total - done))}" if done else "ETA -"
        states = ", ".join(f"{k} {v}" for k, v in sorted(self.counts.items())) or "none yet"
        return f"{done}/{self.total} trials ended ({states}), {len(self.running)} running, {eta}"

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.running.add(trial.trial_id)

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        if result.get("done_row"):
            self.running.discard(trial.trial_id)  # ended: the progress line written now must not count it
            self._write(json.loads(result["row"]))

    def _ended(self, trial: Any, status: str, error: str | None = None, error_file: str | None = None) -> None:
        spec = TrialSpec.from_dict(trial_of(trial.config))
        last = trial.last_result or {}
        if last.get("done_row"):
            return
        val = last.get(METRIC)
        row = ended_row(spec, status, stopped_at_epoch=last.get("epoch"),
                        **{METRIC: None if val is None else round(100 * val, 2)},  # percent, like every accuracy
                        **({"error": error} if error else {}), **({"error_file": error_file} if error_file else {}))
        self._write(row)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.running.discard(trial.trial_id)
        self._ended(trial, "stopped")

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.running.discard(trial.trial_id)
        self._ended(trial, "failed", _error_text(trial), _error_file(trial, self.rows_path.parent))


def _error_text(trial: Any) -> str:
    """The last line of the trial's traceback (e.g. 'FloatingPointError: loss is nan at step 3')."""
    path = getattr(trial, "error_file", None)
    try:
        text = Path(path).read_text().strip() if path else ""
    except OSError:
        text = ""
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1][:500] if lines else "trial raised (no error file)"


def _error_file(trial: Any, run_dir: Path) -> str | None:
    """The trial's full traceback file, relative to the run directory (None without one)."""
    path = getattr(trial, "error_file", None)
    if not path or not Path(path).exists():
        return None
    try:
        return Path(path).resolve().relative_to(run_dir.resolve()).as_posix()
    except ValueError:
        return str(path)


def _duration(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600}h{seconds // 60 % 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


def _wandb_callback(space: Space, run_dir: Path) -> Any | None:
    """One W&B run per trial (flat config), offline unless the space says online; files under the run dir.

    Runs are written from the driver (`harness.wandb_runs`), not by Ray's
    `WandbLoggerCallback`, which starts an actor and a wandb service per trial."""
    if not space.wandb or space.wandb["mode"] == "disabled":
        return None
    from harness.wandb_runs import WandbRuns

    wandb_dir = (run_dir / "wandb").resolve()
    wandb_dir.mkdir(parents=True, exist_ok=True)
    mode = space.wandb["mode"]
    if mode == "online" and not (os.environ.get("WANDB_API_KEY") or _netrc_has_wandb()):
        raise SpaceError("wandb.mode: 'online' needs a W&B key (WANDB_API_KEY or `wandb login`); "
                         "set one, or use mode: offline and `wandb sync` the runs later")
    return WandbRuns(project=space.wandb["project"], group=space.wandb.get("group", space.name), mode=mode,
                     directory=str(wandb_dir), entity=space.wandb.get("entity"), config_fn=flat_config,
                     name_fn=trial_name, finish_timeout_s=30)


def _netrc_has_wandb() -> bool:
    import netrc

    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (OSError, netrc.NetrcParseError):
        return False


def flat_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """A trial's config as flat scalar keys (model, bits, ptq, arm, seed, ptq.<knob>, arm.<knob>, finetune.<field>)."""
    spec = TrialSpec.from_dict(trial_of(config))
    flat: dict[str, Any] = {"model": spec.model, "bits": spec.bits, "ptq": spec.ptq.method, "arm": spec.arm.arm,
                            "seed": spec.seed, "fp_seed": spec.fp_seed}
    groups = {"ptq": spec.ptq.params() | {"calib_size": spec.ptq.calib_size}, "arm": spec.arm.params(),
              "finetune": spec.finetune.to_dict()}
    for prefix, values in groups.items():
        for key, value in values.items():
            flat[f"{prefix}.{key}"] = value if isinstance(value, (int, float, str, bool)) or value is None else str(value)
    flat["trial_id"] = trial_id(spec)
    return flat


def trial_name(config: Mapping[str, Any]) -> str:
    spec = TrialSpec.from_dict(trial_of(config))
    params = ",".join(f"{k}={v}" for k, v in sorted(spec.arm.changed_params().items()))
    return (f"{spec.model}-{spec.bits}-{spec.ptq.method}-{spec.arm.arm}" + (f"[{params}]" if params else "")
            + f"-s{spec.seed}")


def trial_resources(space: Space) -> Any:
    """Resources per trial: the space's default, overridden per model (`resources.models`)."""
    default = {"cpu": space.resources["cpu"], "gpu": space.resources["gpu"]}
    per_model = space.resources.get("models") or {}
    if not per_model:
        return default
    from ray.tune import PlacementGroupFactory

    def resources(config: Mapping[str, Any]) -> Any:
        res = {**default, **per_model.get(trial_of(config)["model"], {})}
        return PlacementGroupFactory([{"CPU": res["cpu"], "GPU": res["gpu"]}])

    return resources


def check_resources(space: Space, nodes: list[dict[str, Any]]) -> None:
    """Fail before any trial starts if no alive node can hold a trial of some model."""
    alive = [n.get("Resources", {}) for n in nodes if n.get("Alive", True)]
    best = {"CPU": max((n.get("CPU", 0) for n in alive), default=0), "GPU": max((n.get("GPU", 0) for n in alive), default=0)}
    for model in space.models:
        need = {**space.resources, **(space.resources.get("models") or {}).get(model, {})}
        if not any(n.get("CPU", 0) >= need["cpu"] and n.get("GPU", 0) >= need["gpu"] for n in alive):
            raise SpaceError(
                f"resources: a {model} trial needs {{cpu: {need['cpu']}, gpu: {need['gpu']}}} but no node has that "
                f"(largest: {best['CPU']:g} CPUs, {best['GPU']:g} GPUs over {len(alive)} node(s)); lower resources "
                "in the space, or run on a cluster that has such nodes (--address)"
            )


def prepare_run_dir(space: Space, run_dir: Path, resume: bool) -> None:
    """Make `run_dir` ready: a fresh run moves an earlier run aside (nothing is deleted);
    `--resume` checks the directory holds a run of the same space."""
    meta = run_dir / "space.json"
    if resume and meta.exists():
        old = json.loads(meta.read_text())
        if old.get("source_hash") != space.source_hash:
            raise SpaceError(
                f"{run_dir} holds a run of a different space ({old.get('name')}, hash {old.get('source_hash')}; "
                f"this one is {space.source_hash}); resume with the same file, or pass --out for a new run directory"
            )
    if not resume and run_dir.exists() and any(run_dir.iterdir()):
        aside = run_dir.with_name(f"{run_dir.name}.{time.strftime('%Y%m%d-%H%M%S')}")
        run_dir.rename(aside)
        log.info("an earlier run of %s moved to %s (use --resume to continue a run instead)", run_dir, aside)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        meta.write_text(json.dumps(space.to_dict(), indent=1))
    except OSError as err:
        raise StoreError(f"cannot write the run directory {run_dir}: {err.strerror or err}; "
                         "pass --out with a writable directory") from err


RUN_TMP = "tmp"


def use_run_tempdir(run_dir: Path) -> Path:
    """Send this process's temporary files, and those of the Ray workers it starts, to run_dir/tmp,
    removed when the process exits (W&B's media and artifact staging folders among them, which a
    process that does not exit cleanly leaves behind). Ray keeps its session folder where it was
    (RAY_TMPDIR, else the system temp directory): its socket paths must stay short."""
    import atexit
    import shutil
    import tempfile

    tmp = (run_dir / RUN_TMP).resolve()
    tmp.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("RAY_TMPDIR", tempfile.gettempdir())
    os.environ["TMPDIR"] = str(tmp)
    tempfile.tempdir = str(tmp)
    atexit.register(shutil.rmtree, tmp, ignore_errors=True)
    return tmp


@contextlib.contextmanager
def scoped_env(**values: str) -> Iterator[None]:
    """Set environment variables for the block (processes started in it inherit them), then restore them."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _experiments(run_dir: Path, name: str) -> list[Path]:
    root = run_dir / "ray"
    return sorted((p for p in root.glob(f"{name}*") if p.is_dir() and (p.name == name or p.name.startswith(f"{name}."))),
                  key=lambda p: (len(p.name), p.name))


def run_sweep(
    space: Space,
    run_dir: Path,
    *,
    resume: bool = False,
    address: str | None = None,
    on_row: Callable[[dict], None] | None = None,
    cache_root: Path | None = None,
    trainable_fn: Callable[[Mapping[str, Any]], None] | None = None,
    own_tempdir: bool = False,
) -> list[dict[str, Any]]:
    """Run every cell of `space` on Ray Tune; returns the rows of the results store.

    A fresh run moves an earlier run in `run_dir` aside; `resume=True` restores the
    interrupted Tune experiment (`Tuner.restore`: unfinished and errored trials continue,
    fine-tunes from their checkpoints) and runs whatever the store still lacks; finished
    trials are never re-run. `cache_root` (default: $ARNQ_CACHE or ~/.cache/arnq of the
    driver) is handed to every trial, so on a cluster it must be a path all nodes see.
    `trainable_fn` replaces the pipeline's trainable (the scale benchmark's trivial one); it
    must report a `row` the way `trainable` does. `own_tempdir` (the CLI's choice: it changes
    this process's temp directory for good) sends temporary files to the run directory
    (`use_run_tempdir`). On SIGINT or SIGTERM it raises `SweepInterrupted` once the running
    trials are stopped and the experiment is saved.
    """
    prepare_run_dir(space, run_dir, resume)
    if own_tempdir:
        use_run_tempdir(run_dir)
    rows_path = run_dir / ROWS
    specs = space.trials()
    local = not (address or os.environ.get("RAY_ADDRESS"))  # this machine's timings say nothing of a cluster's
    specs = schedule(specs, trial_costs(space, specs, cache_root) if local else None)
    finished = finished_ids(rows_path)
    todo = [s for s in specs if trial_id(s) not in finished]
    log.info("%s: %d trials, %d already in the store, %d to run", space.name, len(specs), len(specs) - len(todo),
             len(todo))
    if not todo:
        return read_rows(rows_path)
    try:
        _start_ray(address)
    except KeyboardInterrupt:
        raise SweepInterrupted(signal.SIGINT, read_rows(rows_path), len(specs)) from None
    # after ray.init, whose core installs its own SIGTERM handler; Tune's legacy output engine at verbose 0
    # prints nothing (the new one prints an experiment box and a TensorBoard hint whatever the verbosity)
    with graceful_signals() as received, scoped_env(RAY_AIR_NEW_OUTPUT="0"):
        try:
            _fit(space, run_dir, todo, resume, trainable_fn, cache_root, on_row, received)
        except KeyboardInterrupt:
            if not received:
                received.append(signal.SIGINT)
    rows = read_rows(rows_path)
    if received:
        raise SweepInterrupted(received[0], rows, len(specs))
    return rows


def _start_ray(address: str | None) -> None:
    """Connect to Ray (`address`, else $RAY_ADDRESS, else a new local instance), unless connected.

    Without an address the sweep starts its own instance (`address="local"`) rather than
    Ray's default of joining the cluster last started on this machine (/tmp/ray/ray_current_cluster):
    that cluster may be another program's (a test's `ray.cluster_utils.Cluster`), and the
    sweep would die with it. `address="auto"` joins a cluster `ray start` started here.
    """
    import ray

    if not ray.is_initialized():
        with scoped_env(RAY_USAGE_STATS_ENABLED=os.environ.get("RAY_USAGE_STATS_ENABLED", "0")):
            ray.init(address=address or os.environ.get("RAY_ADDRESS") or "local", include_dashboard=False,
                     log_to_driver=False, configure_logging=False)


def _fit(space: Space, run_dir: Path, todo: list[TrialSpec], resume: bool, trainable_fn: Any,
         cache_root: Path | None, on_row: Callable[[dict], None] | None, received: list[int]) -> None:
    """Restore the interrupted Tune experiment (`resume`), then run the trials in `todo` that the
    store still lacks; stops early when a signal is `received`."""
    import ray
    from ray import tune

    from arnq.cache import cache_root as default_cache_root

    check_resources(space, ray.nodes())
    trainable_fn = tune.with_resources(trainable_fn or trainable, trial_resources(space))
    rows_path = run_dir / ROWS
    extra = {"space": space.name, "space_hash": space.source_hash, **provenance()}
    experiments = _experiments(run_dir, space.name)
    last = experiments[-1] if experiments else None
    if resume and last is not None and tune.Tuner.can_restore(str(last.resolve())):
        log.info("restoring the Tune experiment %s", last)
        tuner = tune.Tuner.restore(str(last.resolve()), trainable=trainable_fn, resume_unfinished=True,
                                   resume_errored=True)
        tuner.fit()
        known = {r["trial_id"] for r in read_rows(rows_path)}
        todo = [s for s in todo if trial_id(s) not in known]  # never part of the restored experiment
        if not todo or received:
            return
    name = space.name if not experiments else f"{space.name}.{len(experiments)}"
    config = {"trial": tune.grid_search([json.dumps(s.to_dict(), sort_keys=True) for s in todo]),
              "run_dir": str(run_dir.resolve()), "plugins": list(space.plugins),
              "threads": max(1, int(space.resources["cpu"])), "device": "cuda" if space.resources["gpu"] else "cpu",
              "cache_root": str(Path(cache_root or default_cache_root()).resolve())}
    callbacks = [Store(rows_path, len(todo), extra, on_row)]
    wandb_cb = _wandb_callback(space, run_dir)
    if wandb_cb is not None:
        callbacks.append(wandb_cb)
    tuner = tune.Tuner(
        trainable_fn,
        param_space=config,
        tune_config=tune.TuneConfig(scheduler=make_scheduler(space), reuse_actors=True),
        run_config=tune.RunConfig(
            name=name, storage_path=str((run_dir / "ray").resolve()),
            failure_config=tune.FailureConfig(max_failures=2), callbacks=callbacks, verbose=0,
        ),
    )
    tuner.fit()
