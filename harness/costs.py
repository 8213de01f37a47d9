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
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

STEPS = 3  # timed batches of each kind, after one warm-up batch


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


def _cache_file(model: str, threads: int, batch_size: int, cache_root: Path | None) -> Path:
    from arnq.cache import cache_root as default_root

    key = hashlib.sha256(f"{model}|{threads}|{batch_size}|{machine_id()}".encode()).hexdigest()[:16]
    return Path(cache_root or default_root()) / "costs" / f"{model}-t{threads}-b{batch_size}-{key}.json"


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
    timing = _measure(model, threads, batch_size)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(timing.to_dict(), indent=1))
    tmp.replace(path)
    return timing


def _measure(name: str, threads: int, batch_size: int) -> Timing:
    from arnq.scoped import seeded, thread_limit

    start = time.perf_counter()
    quiet = logging.getLogger("arnq")
    level = quiet.level
    quiet.setLevel(logging.WARNING)  # the timed training's epoch lines
    try:
        with thread_limit(threads), seeded(0):
            return _timed(name, threads, batch_size, start)
    finally:
        quiet.setLevel(level)


def _timed(name: str, threads: int, batch_size: int, start: float) -> Timing:
    import copy

    from arnq.data import DataConfig, load_data
    from arnq.finetune import EVAL_BATCH
    from arnq.models import MODELS
    from arnq.models.build import build_model, load_tokenizer
    from arnq.models.collate import make_collate
    from arnq.ptq import ptq_config, quantize_
    from arnq.train import TrainConfig, make_loader, train_classifier

    spec = MODELS.get(name)
    network = build_model(spec)  # as built, without FP training: the timing needs the network, not its weights
    transform = spec.preprocess.transform() if spec.preprocess is not None else None
    data = load_data(DataConfig(spec.dataset, seed=0, calib_size=EVAL_BATCH), transform)
    collate = make_collate(spec, load_tokenizer(spec) if spec.modality == "text" else None)
    text = data.modality == "text"
    train = _first(data.train, batch_size * (STEPS + 1))
    test = _first(data.test, EVAL_BATCH * (STEPS + 1))
    train_batches = list(make_loader(train, collate, batch_size, shuffle=False, length_bucketing=text))
    test_batches = list(make_loader(test, collate, EVAL_BATCH, shuffle=False, length_bucketing=text))
    model = copy.deepcopy(network)
    cfg = TrainConfig(epochs=1, lr=1e-5, batch_size=batch_size, eval_every_epoch=False)
    train_classifier(model, train_batches[:1], cfg, num_threads=threads)  # warm-up
    t0 = time.perf_counter()
    train_classifier(model, train_batches[1:], cfg, num_threads=threads)
    train_s = (time.perf_counter() - t0) / _examples(train_batches[1:])
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
