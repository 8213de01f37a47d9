"""Benchmark 4: quantized (fake-quant) evaluation throughput vs FP, per embedded model.

Measures, in one process so machine noise mostly cancels: FP test-set evaluation,
calibration, and fake-quantized test-set evaluation, each timed over `--repeats` runs
(median), at a fixed torch thread count. Prints a Markdown table of items/s and the
quantized/FP throughput ratio (target >= 0.8).

    python -m bench.eval_throughput [--models vit_mnist minilm_rt] [--threads 1] [--bits W4A4] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from arnq.finetune import CALIB_BATCH, EVAL_BATCH, fp_copy
from arnq.models import load_model
from arnq.ptq import ptq_config, quantize_
from arnq.train import evaluate, make_loader


def _timed(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def bench_model(name: str, bits: str, ptq: str, calib_size: int, repeats: int) -> dict:
    loaded = load_model(name)
    text = loaded.data.modality == "text"
    test = make_loader(loaded.data.test, loaded.collate, EVAL_BATCH, shuffle=False, length_bucketing=text)
    calib = make_loader(torch.utils.data.Subset(loaded.data.calib, range(calib_size)), loaded.collate, CALIB_BATCH,
                        shuffle=False, length_bucketing=text)
    n = len(loaded.data.test)
    state = loaded.model.state_dict()
    fp_model = fp_copy(loaded, state)
    fp_s, fp_acc = _timed(lambda: evaluate(fp_model, test, "cpu"), repeats)
    q_model = fp_copy(loaded, state)
    calib_s, _ = _timed(lambda: quantize_(q_model, ptq_config(ptq, bits), calib), 1)
    q_s, q_acc = _timed(lambda: evaluate(q_model, test, "cpu"), repeats)
    return {"model": name, "items": n, "fp_items_per_s": n / fp_s, "q_items_per_s": n / q_s, "ratio": fp_s / q_s,
            "calib_s": calib_s, "fp_acc": 100 * fp_acc, "q_acc": 100 * q_acc}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["vit_mnist", "minilm_rt"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--bits", default="W4A4")
    parser.add_argument("--ptq", default="minmax")
    parser.add_argument("--calib-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"threads={args.threads} bits={args.bits} ptq={args.ptq} calib={args.calib_size} repeats={args.repeats}")
    print("| model | test items | FP items/s | quantized items/s | quantized / FP | calibration s | FP acc | q acc |")
    print("|---|---|---|---|---|---|---|---|")
    for name in args.models:
        r = bench_model(name, args.bits, args.ptq, args.calib_size, args.repeats)
        print(f"| {r['model']} | {r['items']} | {r['fp_items_per_s']:.0f} | {r['q_items_per_s']:.0f} | "
              f"{r['ratio']:.2f} | {r['calib_s']:.1f} | {r['fp_acc']:.2f} | {r['q_acc']:.2f} |")


if __name__ == "__main__":
    main()
