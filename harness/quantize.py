"""Ray-free PTQ evaluation: load (or build) an FP model, quantize it with each method x bits, score it.

`quantize_into` writes the rows to a run directory's results store (rows.jsonl), the same
store a sweep writes, as the plain arm without fine-tuning (ft_acc = fp_acc), so one
reporter (`harness.report.write_report`) reports both.
"""

from __future__ import annotations

import copy
import json
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from arnq.models import MODELS, load_model
from arnq.ptq import PTQConfig, parse_bits, ptq_config, quantize_
from arnq.scoped import thread_limit
from arnq.train import evaluate, make_loader
from harness.store import ROWS, append_row, machine_fields, provenance, read_rows, set_aside

EVAL_BATCH = 128
CALIB_BATCH = 64
JOB = "job.json"  # the job of a quantize run, as space.json is the space of a sweep
QUANTIZE_CODE = ("arnq", "harness.quantize")  # the code a quantize row's numbers depend on (its `code`)


@dataclass(frozen=True)
class QuantizeJob:
    """A grid of PTQ evaluations of one or more models, validated before any work."""

    models: tuple[str, ...]
    ptq: tuple[str, ...]
    bits: tuple[str, ...]
    seed: int = 0
    calib_size: int | None = None  # None: each method's paper default
    device: str = "cpu"
    threads: int | None = None
    ptq_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    weights: str | None = None  # local weights for a single model
    data_root: str | None = None

    def __post_init__(self) -> None:
        for name in ("models", "ptq", "bits"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
            if not getattr(self, name):
                raise ValueError(f"{name}: give at least one value")
        for model in self.models:
            MODELS.get(model)
        for method in self.ptq:
            for bits in self.bits:
                self.config(method, bits)
        stray = sorted(set(self.ptq_params) - set(self.ptq))
        if stray:
            raise ValueError(f"parameters given for {', '.join(stray)}, which is not among the PTQ methods run: "
                             f"add it to --ptq or drop its --param")
        for bits in self.bits:
            parse_bits(bits)
        if self.weights is not None and len(self.models) != 1:
            raise ValueError(f"weights={self.weights!r} applies to one model; give a single --model")
        if self.calib_size is not None and self.calib_size < 1:
            raise ValueError(f"calib_size={self.calib_size}: use a positive integer")

    def config(self, method: str, bits: str) -> PTQConfig:
        """The typed PTQ config of one cell of the job."""
        return ptq_config(method, bits, calib_size=self.calib_size, **self.ptq_params.get(method, {}))


def run_quantize(job: QuantizeJob, on_row: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
    """FP and quantized accuracy for every (model, PTQ method, bits) cell of the job, calibration and evaluation
    both on `job.threads` torch threads (None: torch's current setting)."""
    with thread_limit(job.threads):
        return _run_quantize(job, on_row)


def _run_quantize(job: QuantizeJob, on_row: Callable[[dict[str, Any]], None] | None) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for model_name in job.models:
        calib_sizes = {m: job.config(m, job.bits[0]).resolved_calib_size for m in job.ptq}
        loaded = load_model(
            model_name, seed=job.seed, calib_size=max(calib_sizes.values()), device=job.device, num_threads=job.threads,
            weights=job.weights, data_root=job.data_root,
        )
        text = loaded.data.modality == "text"
        test_loader = make_loader(loaded.data.test, loaded.collate, EVAL_BATCH, shuffle=False, length_bucketing=text)
        start = time.perf_counter()
        fp_acc = evaluate(loaded.model, test_loader, job.device, job.threads)
        fp_eval_s = time.perf_counter() - start
        for method in job.ptq:
            calib = _subset(loaded.data.calib, calib_sizes[method])
            calib_loader = make_loader(calib, loaded.collate, CALIB_BATCH, shuffle=False, length_bucketing=text)
            for bits in job.bits:
                cfg = job.config(method, bits)
                w_bits, a_bits = cfg.w_bits, cfg.a_bits
                model = copy.deepcopy(loaded.model)
                start = time.perf_counter()
                quantize_(model, cfg, calib_loader, job.device)
                calib_s = time.perf_counter() - start
                start = time.perf_counter()
                q_acc = evaluate(model, test_loader, job.device, job.threads)
                row = {
                    "model": model_name,
                    "task": loaded.data.task,
                    "bits": bits,
                    "w_bits": w_bits,
                    "a_bits": a_bits,
                    "ptq": method,
                    "ptq_params": json.dumps(cfg.changed_params(), sort_keys=True),
                    "arm": "plain",
                    "arm_params": "{}",
                    "seed": job.seed,
                    "calib_size": len(calib),
                    "fp_acc": round(100 * fp_acc, 2),
                    "ft_acc": round(100 * fp_acc, 2),  # no fine-tune: the quantized model is the FP one
                    "q_acc": round(100 * q_acc, 2),
                    "status": "ok",
                    "calib_s": round(calib_s, 2),
                    "eval_s": round(time.perf_counter() - start, 2),
                    "fp_eval_s": round(fp_eval_s, 2),
                    "test_size": len(loaded.data.test),
                }
                rows.append(row)
                if on_row is not None:
                    on_row(row)
    return rows


def _subset(dataset: Any, size: int) -> Any:
    from torch.utils.data import Subset

    return dataset if size >= len(dataset) else Subset(dataset, range(size))


def quantize_into(
    job: QuantizeJob, run_dir: Path, on_row: Callable[[dict[str, Any]], None] | None = None
) -> list[dict[str, Any]]:
    """Run the job into `run_dir`'s results store (an earlier run there is moved aside); the store's rows."""
    set_aside(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    job_record = {"job": asdict(job), "command": "arnq " + shlex.join(sys.argv[1:])}
    (run_dir / JOB).write_text(json.dumps(job_record, indent=1) + "\n")
    from arnq.cache import code_fingerprint

    with thread_limit(job.threads):  # the rows record the threads the job calibrates and evaluates on
        extra = {**provenance(), "code": code_fingerprint(*QUANTIZE_CODE), **machine_fields()}

    def store(row: dict[str, Any]) -> None:
        append_row(run_dir / ROWS, {**row, "trial_id": _trial_id(row, job), **extra})
        if on_row is not None:
            on_row(row)

    run_quantize(job, on_row=store)
    return read_rows(run_dir / ROWS)


def _trial_id(row: dict[str, Any], job: QuantizeJob) -> str:
    """The identity of one evaluation: what its numbers depend on."""
    from arnq.cache import content_key

    return content_key({key: row[key] for key in ("model", "bits", "ptq", "ptq_params", "seed", "calib_size")}
                       | {"weights": job.weights, "data_root": job.data_root, "device": job.device})
