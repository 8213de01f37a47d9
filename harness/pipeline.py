"""The Ray-free trial pipeline: fine-tune (cached) under an arm, then PTQ and score.

`run_trial(spec, report)` is what a sweep's trainable calls. A fine-tune depends only
on (model, arm config, seed, fine-tune settings, FP checkpoint) and, for arms that size
their noise from the target, on the parts of the target PTQ config the arm names
(`Arm.target_key`); it is cached content-addressed, so every PTQ x bits cell that needs
the same fine-tune reuses it, and the plain baseline is shared by every arm.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from arnq.arms import ArmConfig, PlainConfig, arm_config_from_dict, arm_handler
from arnq.cache import code_fingerprint, content_key, get_or_build, library_versions, load_state, save_state
from arnq.finetune import CALIB_BATCH, EVAL_BATCH, FinetuneConfig, finetune, make_splits, quantized_accuracy
from arnq.models import MODELS, LoadedModel, load_model
from arnq.models.shipped import shipped_checkpoint
from arnq.ptq import PTQConfig, ptq_config_from_dict
from arnq.train import evaluate, make_loader
from harness.store import row_provenance, utc_timestamp

log = logging.getLogger(__name__)

FINETUNE_KIND = "finetunes"
#: the code behind a fine-tune and a trial result: its fingerprint is part of both cache keys
PIPELINE_CODE = ("arnq", "harness.pipeline")
Report = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class TrialSpec:
    """One leaderboard cell: a model, the target PTQ config, an arm config and a seed under a fine-tune budget.

    `to_dict` / `from_dict` round-trip exactly through JSON (what a Ray trial receives).
    """

    model: str
    ptq: PTQConfig
    arm: ArmConfig = field(default_factory=PlainConfig)
    seed: int = 0
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    fp_seed: int = 0  # every arm and seed starts from the same FP checkpoint

    def __post_init__(self) -> None:
        MODELS.get(self.model)
        if not isinstance(self.ptq, PTQConfig):
            raise TypeError(f"ptq={self.ptq!r}: give a PTQ config (e.g. arnq.ptq.ptq_config('minmax', 'W4A4'))")
        if not isinstance(self.arm, ArmConfig):
            raise TypeError(f"arm={self.arm!r}: give an arm config (e.g. arnq.arms.arm_config('arnq'))")

    @property
    def bits(self) -> str:
        return self.ptq.bits

    def finetune_spec(self) -> dict[str, Any]:
        """What the fine-tuned weights depend on (the cache key)."""
        spec: dict[str, Any] = {
            "model": self.model, "fp_seed": self.fp_seed, "arm": self.arm.arm, "arm_params": self.arm.params(),
            "seed": self.seed, "finetune": self.finetune.to_dict(), "versions": library_versions(),
            "code": code_fingerprint(*PIPELINE_CODE),
        }
        shipped = shipped_checkpoint(MODELS.get(self.model), self.fp_seed)
        if shipped is not None:  # the FP weights are a shipped file, not a function of the code
            spec["fp_weights"] = shipped.sha256
        target = arm_handler(self.arm).target_key(self.arm, self.ptq)
        if target:
            spec["target"] = target
        return spec

    def resolved(self) -> dict[str, Any]:
        """Every setting the trial ran with, defaults filled in (what a row records).

        `arm_target` is what the arm's fine-tune took from the target (`Arm.target_key`) as the code
        resolved it, settings the arm left to the target method's handler included (PTQ-aware ARNQ's
        weight error); absent for arms that do not depend on the target.
        """
        resolved = {**self.to_dict(), "calib_size": self.ptq.resolved_calib_size, "finetune_key": get_key(self)}
        target = self.arm_target()
        if target:
            resolved["arm_target"] = target
        return resolved

    def arm_params(self) -> dict[str, Any]:
        """The arm's settings with those it leaves to the target PTQ method resolved (`Arm.resolved_params`)."""
        return arm_handler(self.arm).resolved_params(self.arm, self.ptq)

    def arm_target(self) -> dict[str, Any]:
        """The arm's `target_key` toward this trial's PTQ config, as JSON would read it back."""
        target = arm_handler(self.arm).target_key(self.arm, self.ptq)
        return json.loads(json.dumps(target, sort_keys=True, default=str)) if target else {}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrialSpec:
        """Inverse of to_dict."""
        data = dict(data)
        return cls(model=data["model"], ptq=ptq_config_from_dict(data["ptq"]), arm=arm_config_from_dict(data["arm"]),
                   seed=data.get("seed", 0), finetune=FinetuneConfig(**data.get("finetune", {})),
                   fp_seed=data.get("fp_seed", 0))

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "ptq": self.ptq.to_dict(), "arm": self.arm.to_dict(), "seed": self.seed,
                "finetune": self.finetune.to_dict(), "fp_seed": self.fp_seed}


@lru_cache(maxsize=4)
def _loaded(model: str, fp_seed: int, device: str, cache_root: Path | None = None) -> LoadedModel:
    """FP model with its test accuracy, one per process (a Ray actor reused across trials keeps it warm).

    Shared read-only: every use copies the model first (`fp_copy`).
    """
    loaded = load_model(model, seed=fp_seed, device=device, cache_root=cache_root)
    if loaded.fp_accuracy is not None:
        return loaded
    text = loaded.data.modality == "text"  # pretrained weights: score them once
    test = make_loader(loaded.data.test, loaded.collate, EVAL_BATCH, shuffle=False, length_bucketing=text)
    return dataclasses.replace(loaded, fp_accuracy=evaluate(loaded.model, test, device))


def cached_finetune(
    spec: TrialSpec,
    loaded: LoadedModel,
    *,
    device: str = "cpu",
    report: Report | None = None,
    checkpoint_root: Path | None = None,
    cache_root: Path | None = None,
) -> tuple[dict[str, Any], dict[str, Any], bool]:
    """(fine-tuned state dict, fine-tune record, cache hit) for `spec`, fine-tuning at most once."""
    if spec.finetune.epochs == 0:  # no fine-tuning: the FP checkpoint as it is (the PTQ literature's setting)
        record = {"ft_acc": loaded.fp_accuracy, "history": [], "diagnostics": {}, "seconds": 0.0, "steps": 0,
                  "arm_stats": {}}
        return {k: v.detach().clone() for k, v in loaded.model.state_dict().items()}, record, True
    built: list[bool] = []

    def build(out: Path) -> None:
        built.append(True)
        ckpt = checkpoint_root / get_key(spec) if checkpoint_root is not None else None

        def on_epoch(epoch: int, record: dict[str, Any]) -> None:
            if report is not None:
                # the epoch counts from 1 (ASHA's rungs are epochs done); the record's own 0-based
                # "epoch" must not override it, or every rung fires one epoch late
                report({**_scalars(record), "stage": "finetune", "epoch": epoch + 1})

        result = finetune(loaded, spec.arm, spec.finetune, spec.ptq, seed=spec.seed, device=device,
                          checkpoint_dir=ckpt, on_epoch=on_epoch)
        save_state(out / "model.safetensors", result.state_dict)
        record = {"ft_acc": result.ft_acc, "history": result.history, "diagnostics": result.diagnostics,
                  "seconds": result.seconds, "steps": result.steps, "arm_stats": result.arm_stats,
                  "resumed_from_epoch": result.resumed_from_epoch}
        (out / "finetune.json").write_text(json.dumps(record))

    entry = get_or_build(FINETUNE_KIND, spec.finetune_spec(), build, root=cache_root)
    state = load_state(entry / "model.safetensors")
    record = json.loads((entry / "finetune.json").read_text())
    return state, record, not built


def get_key(spec: TrialSpec) -> str:
    return content_key(spec.finetune_spec())


def _scalars(record: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if isinstance(v, (int, float, str, bool))}


TRIAL_KIND = "trials"


def trial_cache_spec(spec: TrialSpec, device: str) -> dict[str, Any]:
    """What a trial's result depends on: its fine-tune, the PTQ method, bits, calibration and device."""
    return {"finetune": spec.finetune_spec(), "ptq": spec.ptq.to_dict(), "calib_size": spec.ptq.resolved_calib_size,
            "seed": spec.seed, "device": str(device).split(":")[0]}


def run_trial(
    spec: TrialSpec,
    report: Report | None = None,
    *,
    device: str = "cpu",
    cache_root: Path | None = None,
    checkpoint_root: Path | None = None,
) -> dict[str, Any]:
    """Fine-tune (or reuse), quantize with the cell's PTQ method and bits, and return its result row.

    The result is cached content-addressed too (`trials`, keyed by the code that computes
    it), so re-running a finished space costs a cache lookup per trial; `trial_cached` says
    which rows came from there and `computed_at` when their numbers were computed. Every row
    records when this run of the trial started and ended, the commit and whether the tree
    was dirty.
    """
    start, started_at = time.perf_counter(), utc_timestamp()
    built: list[bool] = []

    def build(out: Path) -> None:
        built.append(True)
        row = _compute_trial(spec, report, device, cache_root, checkpoint_root)
        row |= {"computed_at": utc_timestamp(), "code": code_fingerprint(*PIPELINE_CODE)}
        (out / "row.json").write_text(json.dumps(row))

    entry = get_or_build(TRIAL_KIND, trial_cache_spec(spec, device), build, root=cache_root)
    row = json.loads((entry / "row.json").read_text())
    row["trial_cached"] = not built
    if not built:
        row["wall_s"] = round(time.perf_counter() - start, 2)
    row["config"] = json.dumps(spec.resolved(), sort_keys=True, default=str)
    return row | row_provenance() | {"started_at": started_at, "ended_at": utc_timestamp()}


def _compute_trial(spec: TrialSpec, report: Report | None, device: str, cache_root: Path | None,
                   checkpoint_root: Path | None) -> dict[str, Any]:
    start = time.perf_counter()
    loaded = _loaded(spec.model, spec.fp_seed, device, cache_root)
    state, record, hit = cached_finetune(spec, loaded, device=device, report=report,
                                         checkpoint_root=checkpoint_root, cache_root=cache_root)
    calib, test = ptq_loaders(loaded, spec)
    ptq_start = time.perf_counter()
    q_acc = quantized_accuracy(loaded, state, spec.ptq, calib, test, device)
    row = {
        **cell_fields(spec), "task": loaded.data.task,
        "seed": spec.seed, "fp_acc": _pct(loaded.fp_accuracy), "ft_acc": _pct(record["ft_acc"]),
        "finetune_resumed_from_epoch": record.get("resumed_from_epoch"),
        "q_acc": _pct(q_acc), "status": "ok", "finetune_cached": hit, "finetune_s": round(record["seconds"], 2),
        "ptq_s": round(time.perf_counter() - ptq_start, 2), "wall_s": round(time.perf_counter() - start, 2),
        "diagnostics": json.dumps(record["diagnostics"]), "arm_stats": json.dumps(record.get("arm_stats") or {}),
    }
    if report is not None:
        report({"stage": "ptq", **_scalars(row)})
    return row


def ptq_loaders(loaded: LoadedModel, spec: TrialSpec, calib_size: int | None = None) -> tuple[Any, Any]:
    """(calibration, test) loaders a trial's PTQ evaluation uses: the trial seed's calibration draw of
    `calib_size` examples (default: the target's resolved calibration size) and the full test split."""
    splits = make_splits(loaded, spec.finetune, spec.seed, calib_size or spec.ptq.resolved_calib_size)
    text = loaded.data.modality == "text"
    calib = make_loader(splits.calib, loaded.collate, CALIB_BATCH, shuffle=False, length_bucketing=text)
    test = make_loader(splits.test, loaded.collate, EVAL_BATCH, shuffle=False, length_bucketing=text)
    return calib, test


def cell_fields(spec: TrialSpec) -> dict[str, Any]:
    """The row fields that name a trial's cell: model, bits, PTQ method, arm and the knobs that differ from
    their defaults (JSON), seed."""
    return {"model": spec.model, "bits": spec.bits, "w_bits": spec.ptq.w_bits, "a_bits": spec.ptq.a_bits,
            "ptq": spec.ptq.method, "ptq_params": json.dumps(spec.ptq.changed_params(), sort_keys=True),
            "arm": spec.arm.arm, "arm_params": json.dumps(spec.arm.changed_params(), sort_keys=True),
            "seed": spec.seed}


def _pct(value: float | None) -> float | None:
    return None if value is None else round(100 * value, 2)
