"""Benchmark 5: PTQ calibration cost per method per model (seconds), beside each paper's stated cost.

Every registered PTQ method quantizes each model's FP checkpoint once, at its paper's
calibration size, at W4A4 (weight-only methods at W4A16), through `run_quantize` (the
`arnq quantize` path); the figure is the wall time of `apply` (calibration, searches,
reconstruction; evaluation excluded).

    .venv/bin/python -m bench.ptq_cost --threads 2
    .venv/bin/python -m bench.ptq_cost --models vit_mnist --methods minmax gptq   # a subset
"""

from __future__ import annotations

import argparse
import sys

from bench.common import markdown

#: what each paper (or its official code) says calibration costs; "" where it states nothing
PAPER_COST = {
    "minmax": "1 forward pass (FQ-ViT: 1,000 images)",
    "ema": "1 forward pass",
    "percentile": "1 forward pass",
    "omse": "1 pass + 90 quantize evaluations per layer",
    "fq_vit": "1 pass; PTF and log2 softmax cheap",
    "ptq4vit": "ViT-B ~4 min (32 images) / 13 min (128), one GPU",
    "repq_vit": "1 calibration pass + re-calibration; seconds to minutes",
    "noisyquant": "1000-step clip + 400 mean + 2000 range searches per layer",
    "smoothquant": "1 pass (512 samples)",
    "gptq": "O(d^3) per layer; minutes per 1B parameters, one GPU",
    "awq": "grid of 20 scales per Linear set, scored on the attention / MLP output, + clip grid",
    "adaround": "10k Adam iterations per layer (1,024 images)",
    "liu2021": "alternating interval search per layer (~1,000 images)",
    "mrem": "hours on 1-4 GPUs (BERT-base); parallel ~4x faster",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["vit_mnist", "minilm_rt"])
    parser.add_argument("--methods", nargs="+", default=None, help="default: every registered method")
    parser.add_argument("--bits", default="W4A4", help="bits of weight+activation methods (default W4A4)")
    parser.add_argument("--weight-only-bits", default="W4A16")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    from arnq.ptq import PTQ_METHODS
    from harness.quantize import QuantizeJob, run_quantize

    methods = args.methods or PTQ_METHODS.names()
    unknown = [m for m in methods if m not in PTQ_METHODS.names()]
    if unknown:
        sys.exit(f"unknown PTQ method(s) {unknown}; registered: {', '.join(PTQ_METHODS.names())}")
    table: dict[str, dict[str, object]] = {}
    for model in args.models:
        for method in methods:
            handler = PTQ_METHODS.get(method)
            bits = args.weight_only_bits if handler.quantizes == "W" else args.bits
            (row,) = run_quantize(QuantizeJob(models=(model,), ptq=(method,), bits=(bits,), threads=args.threads))
            entry = table.setdefault(method, {"method": method, "bits": bits})
            entry[f"{model} calib"] = row["calib_size"]
            entry[f"{model} s"] = row["calib_s"]
            entry[f"{model} q_acc"] = row["q_acc"]
            print(f"{model} {bits} {method}: {row['calib_s']} s, q_acc {row['q_acc']}", flush=True)
    for entry in table.values():
        entry["paper's stated cost"] = PAPER_COST.get(str(entry["method"]), "")
    print("\n" + markdown(list(table.values())))


if __name__ == "__main__":
    main()
