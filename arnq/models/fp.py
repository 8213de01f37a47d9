"""The FP model ready for PTQ: FP training by the spec's recipe, cached content-addressed as safetensors."""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from arnq.cache import code_fingerprint, get_or_build, library_versions, load_state, read_meta, save_state
from arnq.data import DataConfig, TaskData, load_data, seeded_indices, take
from arnq.models.build import build_model, load_tokenizer
from arnq.models.collate import make_collate
from arnq.models.registry import MODELS, ModelSpec
from arnq.models.shipped import shipped_checkpoint
from arnq.models.weights import WeightsUnavailableError, package_version
from arnq.scoped import seeded, thread_limit
from arnq.train import evaluate, make_loader, train_classifier

log = logging.getLogger(__name__)

CHECKPOINT_FILE = "model.safetensors"
TRAIN_INFO_FILE = "train.json"
CACHE_KIND = "fp_models"
CACHE_FORMAT = 1  # bump when the checkpoint layout changes (code changes reach the key through FP_CODE)
#: the modules FP training runs: their code fingerprint is part of the FP cache key
FP_CODE = ("arnq.models", "arnq.data", "arnq.train", "arnq.scoped", "arnq.batch", "arnq.quant.quantizer")


@dataclass
class LoadedModel:
    """An FP model ready for PTQ, with its task data, collate function and provenance."""

    spec: ModelSpec
    model: nn.Module
    data: TaskData
    collate: Callable
    checkpoint: Path | None  # cached FP checkpoint (None: pretrained weights used as they are)
    fp_train_seconds: float | None  # time of the FP training when it ran (None: no FP training)
    fp_accuracy: float | None = None  # test accuracy measured right after FP training
    tokenizer: Any = None
    cache_hit: bool | None = None  # True: FP checkpoint came from the cache; None: no FP training
    load_seconds: float = 0.0
    device: str = "cpu"


def _weights_fingerprint(weights: str | os.PathLike | None) -> dict[str, Any] | None:
    """Path plus (name, size, mtime) of each weights file: cheap change detection for the cache key."""
    if weights is None:
        return None
    path = Path(weights).expanduser().resolve()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return {
        "path": str(path),
        "files": [
            [
                p.relative_to(path).as_posix() if p != path else p.name,
                p.stat().st_size,
                int(p.stat().st_mtime),
            ]
            for p in files
        ],
    }


def fp_cache_spec(
    spec: ModelSpec, *, seed: int, data: TaskData, weights: str | os.PathLike | None = None
) -> dict:
    """The content spec that keys the cached FP checkpoint of `spec`."""
    return {
        "format": CACHE_FORMAT,
        "model": spec.to_dict(seed=seed),
        "weights": _weights_fingerprint(weights),
        "weights_package": package_version(spec) if weights is None else None,
        "data": {
            "name": data.name,
            "task": data.task,
            "train_size": len(data.train),
            "test_size": len(data.test),
        },
        "seed": seed,
        "versions": library_versions(),
        "code": code_fingerprint(*FP_CODE),
    }


def _fp_train_set(spec: ModelSpec, data: TaskData, seed: int) -> Any:
    """The seeded `fp_train_subset` of the train split, or all of it."""
    n = len(data.train)
    if spec.fp_train_subset is None or spec.fp_train_subset >= n:
        return data.train
    return take(data.train, seeded_indices(n, spec.fp_train_subset, seed, f"fp_train:{spec.name}"))


def train_fp(
    spec: ModelSpec,
    model: nn.Module,
    data: TaskData,
    collate: Callable,
    *,
    seed: int,
    device: str = "cpu",
    num_threads: int | None = None,
    on_epoch_end: Callable[[int, dict], Any] | None = None,
) -> dict[str, Any]:
    """Run the spec's FP recipe on `model` in place; returns timing, test accuracy and history.

    `on_epoch_end(epoch, record)` sees each epoch (e.g. to snapshot the weights; it must not
    draw from the RNGs). The caller's global RNG state and torch determinism flags are left
    as they were.
    """
    if spec.recipe is None:
        raise ValueError(f"model '{spec.name}' has no FP recipe; it uses pretrained weights as they are")
    cfg = dataclasses.replace(spec.recipe, seed=seed)
    text = spec.modality == "text"
    train_set = _fp_train_set(spec, data, seed)
    train_loader = make_loader(
        train_set,
        collate,
        cfg.batch_size,
        shuffle=True,
        seed=seed,
        length_bucketing=cfg.length_bucketing and text,
    )
    test_loader = make_loader(data.test, collate, 128, shuffle=False, length_bucketing=text)
    start = time.perf_counter()
    with seeded():
        result = train_classifier(
            model,
            train_loader,
            cfg,
            device=device,
            augment=spec.augment,
            num_threads=num_threads,
            on_epoch_end=on_epoch_end,
        )
        train_seconds = time.perf_counter() - start
        accuracy = evaluate(model, test_loader, device, num_threads)
    return {
        "train_seconds": round(train_seconds, 2),
        "test_accuracy": accuracy,
        "train_examples": len(train_set),
        "steps": result["steps"],
        "history": result["history"],
        "num_threads": num_threads or torch.get_num_threads(),
        "device": str(device),
    }


@dataclass(frozen=True)
class _FpWeights:
    """Where the FP weights of a loaded model came from (all None: pretrained weights as they are)."""

    checkpoint: Path | None = None
    train_seconds: float | None = None
    accuracy: float | None = None
    cache_hit: bool | None = None


def _initial_model(
    spec: ModelSpec, seed: int, weights: str | os.PathLike | None, shipped: bool = True
) -> tuple[nn.Module, _FpWeights]:
    """The built model; a model trained from scratch gets `weights` or its shipped checkpoint when given."""
    if spec.source != "scratch":
        return build_model(spec, seed=seed, weights=weights), _FpWeights()
    model = build_model(spec, seed=seed)
    if weights is None:
        ship = shipped_checkpoint(spec, seed) if shipped else None
        if ship is None:
            return model, _FpWeights()
        model.load_state_dict(ship.load())
        log.info("FP model %s (seed %d) from the shipped checkpoint %s", spec.name, seed, ship.path.name)
        return model, _FpWeights(ship.path, ship.train_seconds, ship.test_accuracy, None)
    checkpoint = Path(weights).expanduser()
    if not checkpoint.is_file():
        raise WeightsUnavailableError(
            f"weights={str(weights)!r} for model '{spec.name}' is not a file; pass a safetensors state dict "
            "of the trained FP model, or omit weights to train it (cached)"
        )
    model.load_state_dict(load_state(checkpoint))
    return model, _FpWeights(checkpoint=checkpoint)


def _load_task_data(spec: ModelSpec, seed: int, calib_size: int, data_root: str | None) -> TaskData:
    """The spec's dataset with its eval transform, checked against the model's number of outputs."""
    transform = spec.preprocess.transform() if spec.preprocess is not None else None
    data = load_data(DataConfig(spec.dataset, seed=seed, calib_size=calib_size, root=data_root), transform)
    if data.num_classes != spec.num_labels:
        raise ValueError(
            f"model '{spec.name}' has {spec.num_labels} outputs but dataset '{spec.dataset}' has "
            f"{data.num_classes} classes; fix ModelSpec.num_labels"
        )
    return data


def _cached_fp_weights(
    spec: ModelSpec,
    model: nn.Module,
    data: TaskData,
    collate: Callable,
    *,
    seed: int,
    device: str,
    cache_root: str | os.PathLike | None,
    weights: str | os.PathLike | None,
    num_threads: int | None,
    on_fp_epoch: Callable[[nn.Module, int, dict], Any] | None = None,
) -> _FpWeights:
    """Load the FP-trained weights into `model` from the cache, training and caching them first on a miss."""
    built: list[bool] = []

    def build(out: Path) -> None:
        built.append(True)
        log.info("training FP model %s (seed %d); cached afterwards", spec.name, seed)
        info = train_fp(
            spec,
            model,
            data,
            collate,
            seed=seed,
            device=device,
            num_threads=num_threads,
            on_epoch_end=None if on_fp_epoch is None else functools.partial(on_fp_epoch, model),
        )
        save_state(
            out / CHECKPOINT_FILE, model.state_dict(), metadata={"model": spec.name, "seed": str(seed)}
        )
        (out / TRAIN_INFO_FILE).write_text(json.dumps(info, indent=2))

    key = fp_cache_spec(spec, seed=seed, data=data, weights=weights)
    entry = get_or_build(CACHE_KIND, key, build, root=cache_root)
    model.load_state_dict(load_state(entry / CHECKPOINT_FILE))
    info = json.loads((entry / TRAIN_INFO_FILE).read_text())
    if not built:
        log.info(
            "FP model %s from cache %s (built in %.0f s)", spec.name, entry, read_meta(entry)["build_seconds"]
        )
    return _FpWeights(entry / CHECKPOINT_FILE, info["train_seconds"], info["test_accuracy"], not built)


def load_model(
    name: str,
    *,
    seed: int = 0,
    calib_size: int = 256,
    device: str = "cpu",
    cache_root: str | os.PathLike | None = None,
    data_root: str | None = None,
    weights: str | os.PathLike | None = None,
    num_threads: int | None = None,
    shipped: bool = True,
    on_fp_epoch: Callable[[nn.Module, int, dict], Any] | None = None,
) -> LoadedModel:
    """The FP model `name` (eval mode, on `device`), its task data and collate; trains + caches FP weights once.

    `seed` seeds the FP training / head init and the calibration draw. `weights`: a
    local timm weights file or HF model folder replacing the pretrained source; for a
    model trained from scratch, a safetensors state dict of the trained FP model. A model
    trained from scratch with a shipped checkpoint for `seed` (`arnq.models.shipped`) loads
    it instead of training, unless `shipped=False`. `on_fp_epoch(model, epoch, record)` sees
    each epoch of FP training when the FP weights are trained here (not on a cache hit).
    """
    start = time.perf_counter()
    spec = MODELS.get(name)
    with thread_limit(num_threads):
        # weights first: a missing checkpoint fails in seconds, before a slow dataset scan
        tokenizer = load_tokenizer(spec, weights) if spec.modality == "text" else None
        model, fp = _initial_model(spec, seed, weights, shipped)
        data = _load_task_data(spec, seed, calib_size, data_root)
        collate = make_collate(spec, tokenizer)
        if spec.recipe is not None and fp.checkpoint is None:
            fp = _cached_fp_weights(
                spec,
                model,
                data,
                collate,
                seed=seed,
                device=device,
                cache_root=cache_root,
                weights=weights,
                num_threads=num_threads,
                on_fp_epoch=on_fp_epoch,
            )
    model.to(device).eval()
    return LoadedModel(
        spec=spec,
        model=model,
        data=data,
        collate=collate,
        checkpoint=fp.checkpoint,
        fp_train_seconds=fp.train_seconds,
        fp_accuracy=fp.accuracy,
        tokenizer=tokenizer,
        cache_hit=fp.cache_hit,
        load_seconds=time.perf_counter() - start,
        device=str(device),
    )
