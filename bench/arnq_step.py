"""Benchmark 7: the cost of an ARNQ training step against a plain one, PTQ-aware noise included.

Fine-tunes the FP checkpoint for 2 epochs of `--steps` steps each (batch 32, the harness's
training loop, `--threads` threads) under the plain arm, ARNQ on the min-max grid
(`delta_observer: minmax`) and PTQ-aware ARNQ toward each `--targets` method at `--bits`.
The noise is at full strength from the first step (constant schedule), and the target's
quantizers are re-derived as in a fine-tune (at install, at each epoch's first step and
every `--ptq-refresh` steps); the time per step includes those runs, amortised. Goal: an ARNQ step costs at most 1.25x
a plain step.

    .venv/bin/python -m bench.arnq_step --model minilm_rt --threads 1
    .venv/bin/python -m bench.arnq_step --model vit_fmnist --targets minmax ptq4vit --steps 20
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from bench.common import markdown

DEFAULT_TARGETS = ["minmax", "percentile", "omse", "smoothquant", "noisyquant", "fq_vit", "repq_vit", "ptq4vit",
                   "liu2021", "mrem"]


def time_arm(loaded: Any, arm: Any, target: Any, args: argparse.Namespace) -> dict[str, Any]:
    """Seconds per training step (refreshes amortised) and the target runs' own seconds."""
    import torch

    from arnq.arms import arm_handler
    from arnq.finetune import FinetuneConfig, calib_batches, fp_copy, make_splits
    from arnq.train import make_loader, train_classifier

    ft = FinetuneConfig(epochs=2, batch_size=32, train_subset=32 * args.steps, epoch_q_eval=False)
    splits = make_splits(loaded, ft, 0, target.resolved_calib_size)
    text = loaded.data.modality == "text"
    train = make_loader(splits.train, loaded.collate, 32, shuffle=True, seed=0, length_bucketing=text)

    model = fp_copy(loaded)
    start = time.perf_counter()  # installing runs the target once (PTQ-aware): part of the cost
    runtime = arm_handler(arm).install(model, arm, target, seed=0,
                                       calib=lambda n: calib_batches(loaded, splits.calib, n))
    try:
        summary = train_classifier(model, train, ft.train_config(0), step_callback=runtime.step_callback,
                                   epoch_callback=runtime.on_epoch_start, num_threads=args.threads)
    finally:
        runtime.close()
    seconds = time.perf_counter() - start
    shadow = runtime.injector.shadow.stats() if runtime.injector is not None and runtime.injector.shadow else None
    torch.set_num_threads(args.threads)
    return {"steps": summary["steps"], "s_per_step": seconds / summary["steps"],
            "refreshes": shadow["refreshes"] if shadow else 0,
            "s_per_refresh": shadow["seconds"] / shadow["refreshes"] if shadow else 0.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="minilm_rt")
    parser.add_argument("--bits", default="W4A4")
    parser.add_argument("--targets", nargs="+", default=DEFAULT_TARGETS)
    parser.add_argument("--steps", type=int, default=40, help="steps per epoch (2 epochs)")
    parser.add_argument("--ptq-refresh", type=int, default=25)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    from arnq.arms import arm_config
    from arnq.models import load_model
    from arnq.ptq import ptq_config

    loaded = load_model(args.model, seed=0)
    noise = {"schedule": "constant", "ptq_refresh": args.ptq_refresh}
    runs = [("plain", arm_config("plain"), ptq_config("minmax", args.bits)),
            ("arnq minmax grid", arm_config("arnq", delta_observer="minmax", **noise), ptq_config("minmax", args.bits))]
    runs += [(f"arnq ptq-aware {t}", arm_config("arnq", **noise), ptq_config(t, args.bits)) for t in args.targets]
    rows, plain = [], None
    for label, arm, target in runs:
        r = time_arm(loaded, arm, target, args)
        plain = plain or r["s_per_step"]
        rows.append({"arm": label, "steps": r["steps"], "s/step": f"{r['s_per_step']:.3f}",
                     "x plain": f"{r['s_per_step'] / plain:.2f}", "target runs": r["refreshes"],
                     "s/target run": f"{r['s_per_refresh']:.2f}"})
        print(f"{label}: {r['s_per_step']:.3f} s/step ({r['s_per_step'] / plain:.2f}x plain)", file=sys.stderr,
              flush=True)
    print(f"model {args.model}, {args.bits}, batch 32, {args.threads} thread(s), 2 epochs of {args.steps} steps, "
          f"target runs every {args.ptq_refresh} steps\n")
    print(markdown(rows))


if __name__ == "__main__":
    main()
