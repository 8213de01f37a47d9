"""What one example costs on this machine: a few timed training and evaluation steps per model.

`measure(model, threads, batch_size)` builds the model as registered (no FP training nor
checkpoint: a timing needs the network, not its accuracy), loads its task data and times, at the
trial's thread count, `STEPS` training steps (forward, backward, AdamW, batches of the
space's size from the training split, text bucketed by length as a fine-tune does), the
FP forward over `STEPS` test batches, and the same batches through a fake-quantized copy
(min-max W8A8, the quantized evaluation every PTQ trial ends with). One warm-up batch of
each is run first and not counted. Results are cached per (model, threads, batch size,
machine, library versions) under the artifact cache (`costs/`), so `arnq validate`
measures a machine once; `harness.plan` turns them into a time estimate.

`measure_arms(model, pairs)` times what a fine-tuning arm adds, per (arm, target PTQ config):
on the same network, `STEPS` training steps under the arm installed toward the target, at full
strength (a constant schedule), against `STEPS` plain steps timed in the same call; and, for
PTQ-aware noise, one in-training run of the target method (install, each epoch start). The
ratio of the two step times and the seconds of a run are cached per (model, threads, batch
size, machine, the arm's cost knobs `ARM_COST_FIELDS` and the part of the target its
fine-tune depends on), so a PTQ-aware step toward the Hadamard rotation and one toward
min-max are priced apart.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

STEPS = 3  # timed batches of each kind, after one warm-up batch
#: an arm's knobs that change what one of its training steps computes; the others (schedule,
#: strength, mask rate, refresh periods, loss weights) change its values, not its cost
ARM_COST_FIELDS = ("target", "dist", "modules", "delta_observer", "w_delta", "adapt", "refresh", "ptq_calib", "ptq_settings",
                   "weight_error", "sites", "p", "normalize", "weighting")


@dataclass(frozen=True)
class Timing:
    """Seconds per example of one model on this machine, at `threads` torch threads."""

    model: str
    threads: int
    batch_size: int
    train_s: float  # one training example (forward, backward and optimizer step, amortised over the batch)
    eval_s: float  # one example's FP forward (evaluation batch)
    qeval_s: float  # one example's forward through the fake-quantized model
    train_size: int  # examples of the task's training split (FP training, fine-tune subsets, calibration)
    test_size: int  # examples of its test split (every fine-tune and every PTQ trial evaluate it whole)
    data_name: str  # the task data's name and task (with the sizes: what keys the FP checkpoint's cache entry)
    data_task: str
    measured_s: float  # what the measurement itself took
    machine: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ArmTiming:
    """What one fine-tuning arm toward one target costs on this machine, against plain training."""

    model: str
    threads: int
    batch_size: int
    key: str  # `arm_key(arm, target)`
    label: str  # the arm and the target method, for people
    step_ratio: float  # one training step under the arm (noise at full strength) over a plain one
    run_s: float  # one in-training run of the target method (PTQ-aware noise), 0 for other arms
    measured_s: float
    machine: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def machine_id() -> str:
    """This machine's CPU model, core count and the torch version: what a timing depends on."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), cpu)
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} CPUs, torch {torch.__version__}"


def _cache_file(model: str, threads: int, batch_size: int, cache_root: Path | None, what: str = "") -> Path:
    """The cache file of a model's timing, or with `what` (an `arm_key`) of an arm's."""
    from arnq.cache import cache_root as default_root

    key = hashlib.sha256(f"{model}|{threads}|{batch_size}|{machine_id()}".encode()).hexdigest()[:16]
    name = "-".join([model, f"t{threads}", f"b{batch_size}", *([what] if what else []), key])
    return Path(cache_root or default_root()) / "costs" / f"{name}.json"


def cached(model: str, *, threads: int = 1, batch_size: int = 32, cache_root: Path | None = None) -> Timing | None:
    """The cached timing of `model` on this machine, or None when it was never measured here (nothing is run)."""
    path = _cache_file(model, threads, batch_size, cache_root)
    return Timing(**json.loads(path.read_text())) if path.exists() else None


def measure(model: str, *, threads: int = 1, batch_size: int = 32, cache_root: Path | None = None,
            refresh: bool = False) -> Timing:
    """The cached timing of `model`, measured now on a miss (or with `refresh`); see the module docstring."""
    path = _cache_file(model, threads, batch_size, cache_root)
    if path.exists() and not refresh:
        return Timing(**json.loads(path.read_text()))
    load = _busy_load(threads)
    timing = _measure(model, threads, batch_size)
    _write(path, timing.to_dict())
    _warn_if_busy(load, model, [path])
    return timing


def _warn_if_busy(load: float | None, what: str, paths: Sequence[Path]) -> None:
    """Warn that `what` was timed at 1-minute load `load` (None: on a quiet CPU, no warning), naming the
    cache files `paths` to delete so it is timed again."""
    if load is None:
        return
    log.warning("%s was timed while other processes kept the CPU busy (1-minute load %.1f on %d cores): "
                "its estimates will run high until it is timed again; to re-time it, delete %s and run "
                "`arnq validate` with nothing else running", what, load, os.cpu_count() or 1,
                " ".join(str(p) for p in paths))


def _busy_load(threads: int) -> float | None:
    """The 1-minute load average when other processes leave fewer than `threads` cores idle, else None
    (also where the platform has no load average)."""
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        return None
    return load if load > (os.cpu_count() or 1) - threads + 0.5 else None


def _write(path: Path, data: dict[str, Any]) -> None:
    """Write `data` as JSON to `path` through a temporary file, so a reader never sees half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=1))
    tmp.replace(path)


def arm_key(arm: Any, target: Any) -> str:
    """An arm timing's cache key: the arm's name, its `ARM_COST_FIELDS` and what of `target` its fine-tune
    depends on (its handler's `target_key`: the whole in-training config for PTQ-aware noise)."""
    from arnq.arms import arm_handler
    from arnq.cache import content_key

    knobs = {f.name: getattr(arm, f.name) for f in fields(arm) if f.name in ARM_COST_FIELDS}
    spec = {"arm": arm.arm, "knobs": knobs, "target": arm_handler(arm).target_key(arm, target)}
    return f"{arm.arm}-{content_key(spec)[:12]}"


def measure_arms(model: str, pairs: Sequence[tuple[Any, Any]], *, threads: int = 1, batch_size: int = 32,
                 cache_root: Path | None = None, measure: bool = True) -> dict[str, ArmTiming]:
    """The timing of each (arm, target PTQ config) in `pairs` by `arm_key`, from the cache, the missing
    ones measured now in one session (see the module docstring), or left out with `measure=False`."""
    out: dict[str, ArmTiming] = {}
    todo: dict[str, tuple[Any, Any]] = {}
    for arm, target in pairs:
        key = arm_key(arm, target)
        path = _cache_file(model, threads, batch_size, cache_root, key)
        if path.exists():
            out[key] = ArmTiming(**json.loads(path.read_text()))
        else:
            todo.setdefault(key, (arm, target))
    if todo and measure:
        load = _busy_load(threads)
        written = []
        for key, timing in _quiet(_measure_arms, model, threads, todo, batch_size).items():
            written.append(_cache_file(model, threads, batch_size, cache_root, key))
            _write(written[-1], timing.to_dict())
            out[key] = timing
        _warn_if_busy(load, f"the arm(s) of {model}", written)
    return out


def _quiet(fn: Any, name: str, threads: int, *args: Any) -> Any:
    """`fn(name, threads, *args, start)` at `threads` torch threads, seeded, the training's epoch lines muted."""
    from arnq.scoped import seeded, thread_limit

    start = time.perf_counter()
    quiet = logging.getLogger("arnq")
    level = quiet.level
    quiet.setLevel(logging.WARNING)  # the timed training's epoch lines
    try:
        with thread_limit(threads), seeded(0):
            return fn(name, threads, *args, start)
    finally:
        quiet.setLevel(level)


def _measure(name: str, threads: int, batch_size: int) -> Timing:
    return _quiet(_timed, name, threads, batch_size)


@dataclass
class _Bench:
    """One model as built, its task data and the batches every timing runs (`data` and `collate` as a
    `LoadedModel` has them, so `arnq.finetune.calib_batches` draws calibration batches from it)."""

    network: Any
    data: Any
    collate: Any
    train_batches: list[Any]
    test_batches: list[Any]


def _bench(name: str, batch_size: int) -> _Bench:
    from arnq.data import DataConfig, load_data
    from arnq.finetune import EVAL_BATCH
    from arnq.models import MODELS
    from arnq.models.build import build_model, load_tokenizer
    from arnq.models.collate import make_collate
    from arnq.train import make_loader

    spec = MODELS.get(name)
    network = build_model(spec)  # as built, without FP training: the timing needs the network, not its weights
    transform = spec.preprocess.transform() if spec.preprocess is not None else None
    data = load_data(DataConfig(spec.dataset, seed=0, calib_size=EVAL_BATCH), transform)
    collate = make_collate(spec, load_tokenizer(spec) if spec.modality == "text" else None)
    text = data.modality == "text"
    train = _first(data.train, batch_size * (STEPS + 1))
    test = _first(data.test, EVAL_BATCH * (STEPS + 1))
    return _Bench(network, data, collate,
                  list(make_loader(train, collate, batch_size, shuffle=False, length_bucketing=text)),
                  list(make_loader(test, collate, EVAL_BATCH, shuffle=False, length_bucketing=text)))


def _train_s(bench: _Bench, batch_size: int, threads: int,
             install: Any = None) -> tuple[float, dict[str, Any] | None]:
    """Seconds per example of training a copy of the network on train_batches[1:] (batches[0] warms
    up), under the arm `install(model)` installs when given (its ArmRuntime), less the seconds its
    in-training target runs took; and those runs' stats (None without them)."""
    import copy

    from arnq.train import TrainConfig, train_classifier

    model = copy.deepcopy(bench.network)
    cfg = TrainConfig(epochs=1, lr=1e-5, batch_size=batch_size, eval_every_epoch=False)
    runtime = install(model) if install is not None else None
    hooks = {} if runtime is None else {
        "loss_fn": runtime.loss_fn if runtime.has_loss else None, "step_callback": runtime.step_callback,
        "epoch_callback": runtime.on_epoch_start}
    try:
        train_classifier(model, bench.train_batches[:1], cfg, num_threads=threads, **hooks)  # warm-up
        runs_before = _run_seconds(runtime)
        t0 = time.perf_counter()
        train_classifier(model, bench.train_batches[1:], cfg, num_threads=threads, **hooks)
        seconds = time.perf_counter() - t0 - (_run_seconds(runtime) - runs_before)
        stats = _shadow_stats(runtime)
    finally:
        if runtime is not None:
            runtime.close()
    return seconds / _examples(bench.train_batches[1:]), stats


def _shadow_stats(runtime: Any) -> dict[str, Any] | None:
    shadow = getattr(getattr(runtime, "injector", None), "shadow", None)
    return shadow.stats() if shadow is not None else None


def _run_seconds(runtime: Any) -> float:
    stats = _shadow_stats(runtime)
    return float(stats["seconds"]) if stats else 0.0


def _measure_arms(name: str, threads: int, todo: dict[str, tuple[Any, Any]], batch_size: int,
                  start: float) -> dict[str, ArmTiming]:
    from arnq.arms import arm_handler
    from arnq.finetune import calib_batches, install_arm

    bench = _bench(name, batch_size)

    def calib(n: int) -> list[Any]:
        return calib_batches(bench, bench.data.train, n)  # type: ignore[arg-type]  # _Bench has its data and collate

    plain, _ = _train_s(bench, batch_size, threads)
    out = {}
    for key, (arm, target) in todo.items():
        timed = _full_strength(arm)
        started = time.perf_counter()
        step, runs = _train_s(bench, batch_size, threads,
                              lambda model, a=timed, t=target: install_arm(arm_handler(a), model, a, t, 0, calib))
        run_s = runs["seconds"] / runs["refreshes"] if runs and runs["refreshes"] else 0.0
        out[key] = ArmTiming(model=name, threads=threads, batch_size=batch_size, key=key,
                             label=_label(arm, target), step_ratio=round(step / plain, 4),
                             run_s=round(run_s, 4), measured_s=round(time.perf_counter() - started, 2),
                             machine=machine_id())
    log.info("timed %d arm(s) of %s on this machine in %.0f s", len(todo), name, time.perf_counter() - start)
    return out


def _label(arm: Any, target: Any) -> str:
    from arnq.arms import arm_handler

    if not arm_handler(arm).uses_target:
        return arm.arm
    observer = getattr(arm, "delta_observer", None)
    return f"{arm.arm}{f' ({observer} grid)' if observer else ''} -> {target.method}"


def _full_strength(arm: Any) -> Any:
    """`arm` with its noise at full strength from the first step and no periodic target run (those
    are timed apart, as a run's seconds)."""
    names = {f.name for f in fields(arm)}
    changes = {k: v for k, v in (("schedule", "constant"), ("ptq_refresh", 10**6)) if k in names}
    return replace(arm, **changes)


def _timed(name: str, threads: int, batch_size: int, start: float) -> Timing:
    import copy

    from arnq.finetune import EVAL_BATCH
    from arnq.ptq import ptq_config, quantize_

    bench = _bench(name, batch_size)
    network, data, test_batches = bench.network, bench.data, bench.test_batches
    train_s, _ = _train_s(bench, batch_size, threads)
    eval_s = _forward_s(network, test_batches)
    quantized = copy.deepcopy(network)
    quantize_(quantized, ptq_config("minmax", "W8A8", calib_size=EVAL_BATCH), test_batches[:1])
    qeval_s = _forward_s(quantized, test_batches)
    return Timing(model=name, threads=threads, batch_size=batch_size, train_s=train_s, eval_s=eval_s,
                  qeval_s=qeval_s, train_size=len(data.train), test_size=len(data.test), data_name=data.name,
                  data_task=data.task,
                  measured_s=round(time.perf_counter() - start, 2), machine=machine_id())


def _first(dataset: Any, n: int) -> Any:
    from arnq.data.base import take

    return take(dataset, list(range(min(n, len(dataset)))))


def _examples(batches: list[Any]) -> int:
    return sum(len(labels) for _, labels in batches)


def _forward_s(model: Any, batches: list[Any]) -> float:
    """Seconds per example of `model`'s evaluation over batches[1:] (batches[0] warms up)."""
    from arnq.train import evaluate

    evaluate(model, batches[:1])
    t0 = time.perf_counter()
    evaluate(model, batches[1:])
    return (time.perf_counter() - t0) / _examples(batches[1:])
