"""Ray-free PTQ evaluation: load (or build) an FP model, quantize it with each method x bits, score it."""

from __future__ import annotations

import copy
import csv
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from arnq.models import MODELS, load_model
from arnq.ptq import PTQConfig, parse_bits, ptq_config, quantize_
from arnq.train import evaluate, make_loader

EVAL_BATCH = 128
CALIB_BATCH = 64


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
    """FP and quantized accuracy for every (model, PTQ method, bits) cell of the job."""
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
                    "ptq_params": json.dumps(cfg.params(), sort_keys=True),
                    "seed": job.seed,
                    "calib_size": len(calib),
                    "fp_acc": round(100 * fp_acc, 2),
                    "q_acc": round(100 * q_acc, 2),
                    "drop": round(100 * (fp_acc - q_acc), 2),
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


MD_COLUMNS = ("model", "bits", "ptq", "fp_acc", "q_acc", "drop", "calib_size", "calib_s", "eval_s")


def write_rows(rows: Sequence[dict[str, Any]], out_dir: Path, meta: dict[str, Any]) -> tuple[Path, Path]:
    """results.csv, results.md (a table with provenance) and results.json (rows + provenance) under `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, json_path = out_dir / "results.csv", out_dir / "results.json"
    with csv_path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    json_path.write_text(json.dumps({"meta": meta, "rows": list(rows)}, indent=2))
    lines = ["| " + " | ".join(MD_COLUMNS) + " |", "|" + "---|" * len(MD_COLUMNS)]
    lines += ["| " + " | ".join(str(r[c]) for c in MD_COLUMNS) + " |" for r in rows]
    versions = ", ".join(f"{k} {v}" for k, v in meta["versions"].items())
    lines += ["", f"Accuracy in %, test split. Generated {meta['date']} by `{meta['command']}`; {versions}."]
    (out_dir / "results.md").write_text("\n".join(lines) + "\n")
    return csv_path, json_path


def job_meta(job: QuantizeJob) -> dict[str, Any]:
    import platform
    import shlex
    import sys

    from arnq.cache import library_versions

    return {"job": asdict(job), "versions": library_versions(), "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "command": "arnq " + shlex.join(sys.argv[1:]), "machine": f"{platform.machine()}, {os.cpu_count()} CPUs"}
