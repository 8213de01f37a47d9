"""Fine-tune an FP model under one arm, reporting FP and target-PTQ accuracy each epoch.

Ray-free: a sweep calls `finetune` from its trial and forwards `on_epoch` records to
its scheduler. Every arm starts from the same FP checkpoint and sees the same
fine-tuning subset (fixed across seeds, so seeds pair); the seed drives shuffling,
dropout, noise and the calibration draw. Per-epoch metrics come from a validation
split carved out of the train split (never the test split, which only scores the
final model). With `checkpoint_dir`, each epoch is checkpointed (safetensors + JSON)
and an interrupted fine-tune resumes where it stopped, to the same weights.
"""

from __future__ import annotations

import copy
import inspect
import json
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from arnq.arms import ArmConfig, arm_handler
from arnq.arms.diagnostics import activation_stats, linear_input_stats, summarize
from arnq.cache import load_state, save_state
from arnq.data import seeded_indices, take
from arnq.models import LoadedModel
from arnq.ptq import PTQConfig, quantize_
from arnq.scoped import seeded
from arnq.train import TrainConfig, evaluate, make_loader, train_classifier

EVAL_BATCH = 128
CALIB_BATCH = 64
SUBSET_PURPOSE = "finetune-subset"  # fixed across seeds: arms and seeds see the same examples
EpochFn = Callable[[int, dict[str, Any]], "bool | None"]


@dataclass(frozen=True)
class FinetuneConfig:
    """Budget and optimiser of a fine-tune (identical for every arm it is compared across)."""

    epochs: int = 2
    lr: float = 5e-5
    batch_size: int = 32
    train_subset: int | None = 2000
    val_size: int = 500  # held-out train examples for per-epoch metrics
    warmup_frac: float = 0.1
    weight_decay: float = 0.01
    grad_clip: float | None = 1.0
    label_smoothing: float = 0.0
    epoch_q_eval: bool = True  # quantize and score on the validation split after every epoch
    diagnostics_batches: int = 4  # calibration batches for activation statistics (0: skip)

    def __post_init__(self) -> None:
        if not isinstance(self.epochs, int) or isinstance(self.epochs, bool) or self.epochs < 0:
            raise ValueError(f"epochs={self.epochs!r}: use an integer >= 1, or 0 for no fine-tuning (the FP model)")
        if self.epochs:
            self.train_config(0)  # TrainConfig validates the optimiser fields
        else:
            replace(self, epochs=1)
        if self.train_subset is not None and self.train_subset < 1:
            raise ValueError(f"train_subset={self.train_subset!r}: use a positive size or None (all)")
        if self.val_size < 1:
            raise ValueError(f"val_size={self.val_size!r}: use a positive number of validation examples")
        if self.diagnostics_batches < 0:
            raise ValueError(f"diagnostics_batches={self.diagnostics_batches!r}: use 0 (off) or more")

    def train_config(self, seed: int) -> TrainConfig:
        return TrainConfig(
            epochs=self.epochs, lr=self.lr, batch_size=self.batch_size, weight_decay=self.weight_decay,
            warmup_frac=self.warmup_frac, grad_clip=self.grad_clip, seed=seed, label_smoothing=self.label_smoothing,
            eval_every_epoch=False,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class FinetuneResult:
    """A fine-tuned FP state dict with its accuracy, per-epoch history and diagnostics."""

    state_dict: dict[str, torch.Tensor]
    ft_acc: float  # test accuracy after fine-tuning, noise off
    history: list[dict[str, Any]]
    diagnostics: dict[str, Any]
    seconds: float
    steps: int
    stopped_early: bool = False
    resumed_from_epoch: int | None = None
    arm_stats: dict[str, Any] = field(default_factory=dict)


@dataclass
class Splits:
    """The examples a fine-tune uses: fixed subset, validation, calibration (seeded), test."""

    train: Any
    val: Any
    calib: Any
    test: Any


def make_splits(loaded: LoadedModel, ft: FinetuneConfig, seed: int, calib_size: int) -> Splits:
    """Fine-tune subset and validation split (both fixed), calibration draw (seeded) from the train split."""
    full = loaded.data.train
    n = len(full)
    order = seeded_indices(n, n, 0, SUBSET_PURPOSE)
    val_idx = order[: ft.val_size]
    rest = order[ft.val_size:]
    train_idx = rest if ft.train_subset is None else rest[: ft.train_subset]
    if ft.train_subset is not None and ft.train_subset > len(rest):
        raise ValueError(
            f"train_subset={ft.train_subset} exceeds the {len(rest)} train examples left after val_size={ft.val_size}"
        )
    calib_idx = seeded_indices(n, min(calib_size, n), seed, "calib")
    return Splits(take(full, train_idx), take(full, val_idx), take(full, calib_idx), loaded.data.test)


def fp_copy(loaded: LoadedModel, state_dict: Mapping[str, torch.Tensor] | None = None) -> nn.Module:
    """A fresh FP model (no quantizers) with `state_dict` loaded, in eval mode."""
    model = copy.deepcopy(loaded.model)
    if state_dict is not None:
        model.load_state_dict(dict(state_dict))
    return model.eval()


def calib_batches(loaded: LoadedModel, calib: Any, n: int) -> list[Any]:
    """Batches of the first n examples of a calibration split (itself a seeded random draw of the train split)."""
    subset = take(calib, range(min(n, len(calib))))
    return list(make_loader(subset, loaded.collate, CALIB_BATCH, shuffle=False,
                            length_bucketing=loaded.data.modality == "text"))


def quantized_accuracy(
    loaded: LoadedModel,
    state_dict: Mapping[str, torch.Tensor],
    target: PTQConfig,
    calib_loader: Any,
    eval_loader: Any,
    device: str = "cpu",
) -> float:
    """Accuracy of the FP weights `state_dict` after the target PTQ config."""
    model = fp_copy(loaded, state_dict).to(device)
    quantize_(model, target, calib_loader, device)
    return evaluate(model, eval_loader, device)


def _diagnostics(model: nn.Module, calib_loader: Any, batches: int, device: str) -> dict[str, Any]:
    if batches == 0:
        return {}
    acts = activation_stats(model, calib_loader, max_batches=batches, device=device)
    linear = linear_input_stats(model, calib_loader, max_batches=batches, device=device)
    return {"sites": summarize(acts), "linear_in": summarize(linear),
            "linear_in_max_over_sigma_mean": _mean([s["max_over_sigma"] for s in linear.values()])}


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


@seeded()  # restores the caller's RNG states and flags: data loaders and evaluation draw from them
def finetune(
    loaded: LoadedModel,
    arm: ArmConfig,
    ft: FinetuneConfig,
    target: PTQConfig,
    *,
    seed: int = 0,
    device: str = "cpu",
    num_threads: int | None = None,
    checkpoint_dir: str | Path | None = None,
    on_epoch: EpochFn | None = None,
) -> FinetuneResult:
    """Fine-tune `loaded.model` (left untouched) under `arm` for the `target` PTQ config.

    Returns the fine-tuned FP weights and metrics; per-epoch `q_val_acc` scores the
    validation split after `target`, calibrated on `target.resolved_calib_size` examples.
    """
    handler = arm_handler(arm)
    splits = make_splits(loaded, ft, seed, target.resolved_calib_size)
    text = loaded.data.modality == "text"

    def loader(ds: Any, batch: int, shuffle: bool = False) -> Any:
        return make_loader(ds, loaded.collate, batch, shuffle=shuffle, seed=seed, length_bucketing=text)

    train_loader = loader(splits.train, ft.batch_size, shuffle=True)
    val_loader, calib_loader = loader(splits.val, EVAL_BATCH), loader(splits.calib, CALIB_BATCH)
    start = time.perf_counter()
    before = _diagnostics(loaded.model, calib_loader, ft.diagnostics_batches, device)

    model = fp_copy(loaded).to(device)
    runtime = install_arm(handler, model, arm, target, seed, lambda n: calib_batches(loaded, splits.calib, n))
    ckpt = Checkpointer(Path(checkpoint_dir)) if checkpoint_dir is not None else None
    resume = ckpt.load(model, runtime) if ckpt is not None else None

    def epoch_end(epoch: int, record: dict[str, Any]) -> bool | None:
        state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        record["ft_val_acc"] = evaluate(model, val_loader, device)
        if ft.epoch_q_eval:
            record["q_val_acc"] = quantized_accuracy(loaded, state, target, calib_loader, val_loader, device)
        if runtime.last_stats:
            record["arm_stats"] = _jsonable(runtime.last_stats)
        model.train()
        return on_epoch(epoch, record) if on_epoch is not None else None

    def save(train_state: dict[str, Any]) -> None:
        if ckpt is not None:
            ckpt.save(model, runtime, train_state)

    try:
        summary = train_classifier(
            model, train_loader, ft.train_config(seed), device=device, on_epoch_end=epoch_end,
            loss_fn=runtime.loss_fn if runtime.has_loss else None, step_callback=runtime.step_callback,
            epoch_callback=runtime.on_epoch_start, num_threads=num_threads, resume=resume, on_checkpoint=save,
        )
    finally:
        runtime.close()
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    final = fp_copy(loaded, state).to(device)
    test_loader = loader(splits.test, EVAL_BATCH)
    ft_acc = evaluate(final, test_loader, device, num_threads)
    after = _diagnostics(final, calib_loader, ft.diagnostics_batches, device)
    return FinetuneResult(
        state_dict=state,
        ft_acc=ft_acc,
        history=summary["history"],
        diagnostics={"before": before, "after": after},
        seconds=time.perf_counter() - start,
        steps=summary["steps"],
        stopped_early=summary["stopped_early"],
        resumed_from_epoch=resume["epoch"] if resume else None,
        arm_stats=_jsonable(runtime.last_stats),
    )


def install_arm(handler: Any, model: nn.Module, arm: ArmConfig, target: PTQConfig, seed: int,
                calib: Callable[[int], list[Any]]) -> Any:
    """`handler.install`, handing it the calibration data when it takes `calib` (arms written before
    PTQ-aware noise take model, config, target and seed only)."""
    params = inspect.signature(handler.install).parameters
    takes_calib = "calib" in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    if takes_calib:
        return handler.install(model, arm, target, seed=seed, calib=calib)
    return handler.install(model, arm, target, seed=seed)


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, torch.Tensor):
        return obj.item() if obj.numel() == 1 else obj.tolist()
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    return obj


class Checkpointer:
    """Per-epoch fine-tuning checkpoints: weights and optimiser tensors in safetensors, the rest in JSON.

    Written to a temporary name and renamed, so a kill mid-write leaves the previous
    checkpoint intact; never unpickled on load.
    """

    MODEL, OPTIM, STATE = "model.safetensors", "optimizer.safetensors", "state.json"

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def save(self, model: nn.Module, runtime: Any, train_state: dict[str, Any]) -> None:
        tmp = self.directory.with_name(self.directory.name + ".tmp")
        tmp.mkdir(parents=True, exist_ok=True)
        save_state(tmp / self.MODEL, model.state_dict())
        tensors, meta = _flatten_optimizer(train_state["optimizer"])
        tensors["rng/torch"] = train_state["rng"]
        if runtime.injector is not None and runtime.injector.generator is not None:
            tensors["rng/noise"] = runtime.injector.generator.get_state()
        save_state(tmp / self.OPTIM, tensors)
        state = {k: v for k, v in train_state.items() if k not in ("optimizer", "rng")}
        state.update(optimizer_meta=meta, arm=runtime.state_dict())
        (tmp / self.STATE).write_text(json.dumps(_jsonable(state)))
        if self.directory.exists():
            old = self.directory.with_name(self.directory.name + ".old")
            self.directory.rename(old)
            tmp.rename(self.directory)
            _rmtree(old)
        else:
            tmp.rename(self.directory)

    def load(self, model: nn.Module, runtime: Any) -> dict[str, Any] | None:
        """Restore model and arm state; returns the train state to resume from, or None."""
        directory = self.directory
        if not (directory / self.STATE).exists():  # killed between the two renames of `save`: the previous one
            directory = self.directory.with_name(self.directory.name + ".old")
            if not (directory / self.STATE).exists():
                return None
        state = json.loads((directory / self.STATE).read_text())
        model.load_state_dict(load_state(directory / self.MODEL))
        tensors = load_state(directory / self.OPTIM)
        runtime.load_state_dict(state.pop("arm"))
        if "rng/noise" in tensors and runtime.injector is not None and runtime.injector.generator is not None:
            runtime.injector.generator.set_state(tensors["rng/noise"])
        state["optimizer"] = _unflatten_optimizer(tensors, state.pop("optimizer_meta"))
        state["rng"] = tensors["rng/torch"]
        return state


def _flatten_optimizer(opt_state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors, scalars = {}, {}
    for pid, slots in opt_state["state"].items():
        for key, value in slots.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim/{pid}/{key}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{pid}/{key}"] = value
    return tensors, {"param_groups": opt_state["param_groups"], "scalars": scalars}


def _unflatten_optimizer(tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if name.startswith("optim/"):
            _, pid, key = name.split("/", 2)
            state.setdefault(int(pid), {})[key] = value
    for name, value in meta["scalars"].items():
        pid, key = name.split("/", 1)
        state.setdefault(int(pid), {})[key] = value
    return {"state": state, "param_groups": meta["param_groups"]}


def _rmtree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)
