"""Benchmark 8: what the in-training settings of the costly PTQ methods save and what they change.

PTQ-aware ARNQ re-runs the target PTQ method every `ptq_refresh` steps; a method whose full
search costs too much names cheaper settings (`PTQMethod.shadow_params`). For each such
method, the FP checkpoint is quantized twice on the same `--calib` calibration examples
(the in-training run's size): with the method's settings as configured and with its
`shadow_params`; the figures are the wall time of each run (`--threads` threads) and the
test accuracy of each quantized model, so the table shows what the cheaper run costs and
how far its quantizers are from the full method's.

    .venv/bin/python -m bench.shadow_params --model minilm_rt --threads 1
"""

from __future__ import annotations

import argparse
import time

from bench.common import markdown


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="minilm_rt")
    parser.add_argument("--bits", default="W4A4")
    parser.add_argument("--calib", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--methods", nargs="*", help="default: every method with shadow_params")
    args = parser.parse_args()

    import torch

    from arnq.arms.shadow import shadow_config
    from arnq.finetune import EVAL_BATCH, FinetuneConfig, calib_batches, fp_copy, make_splits
    from arnq.models import load_model
    from arnq.ptq import PTQ_METHODS, ptq_config, quantize_
    from arnq.train import evaluate, make_loader

    torch.set_num_threads(args.threads)
    loaded = load_model(args.model, seed=0)
    text = loaded.data.modality == "text"
    splits = make_splits(loaded, FinetuneConfig(), 0, args.calib)
    calib = calib_batches(loaded, splits.calib, args.calib)
    test = make_loader(splits.test, loaded.collate, EVAL_BATCH, shuffle=False, length_bucketing=text)
    methods = args.methods or [m for m in PTQ_METHODS.names() if PTQ_METHODS.get(m).shadow_params]
    rows = []
    for method in methods:
        weight_only = PTQ_METHODS.get(method).quantizes == "W"
        target = ptq_config(method, args.bits.replace(args.bits[args.bits.index("A"):], "A16") if weight_only
                            else args.bits, calib_size=args.calib)
        results = {}
        for label, cfg in (("full", target), ("in-training", shadow_config(target, args.calib))):
            model = fp_copy(loaded)
            start = time.perf_counter()
            quantize_(model, cfg, calib)
            seconds = time.perf_counter() - start
            results[label] = (seconds, 100 * evaluate(model, test, num_threads=args.threads))
        (full_s, full_acc), (cheap_s, cheap_acc) = results["full"], results["in-training"]
        rows.append({"method": method, "bits": target.bits, "shadow_params": PTQ_METHODS.get(method).shadow_params,
                     "full s": f"{full_s:.1f}", "in-training s": f"{cheap_s:.1f}", "speed-up": f"{full_s / cheap_s:.1f}x",
                     "full q_acc": f"{full_acc:.2f}", "in-training q_acc": f"{cheap_acc:.2f}",
                     "difference": f"{cheap_acc - full_acc:+.2f}"})
        print(rows[-1], flush=True)
    print(f"\nmodel {args.model}, {args.calib} calibration examples, {args.threads} thread(s)\n")
    print(markdown(rows))


if __name__ == "__main__":
    main()
