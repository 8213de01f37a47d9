"""Time one PTQ-aware in-training run of Liu 2021 on a model, and fingerprint the model it quantizes.

The run PTQ-aware ARNQ repeats during a fine-tune: Liu 2021 at its in-training settings
(`shadow_config`) on 64 calibration examples of the fine-tune's calibration split, on the FP
checkpoint, one thread. Prints the seconds and a SHA-256 over every parameter and buffer of
the quantized model (steps, zero points, corrected biases), so running it at two commits shows
whether a change kept the result bit for bit and what it saved:

    .venv/bin/python scripts/ptq_checks/liu2021_shadow_run.py --model minilm_rt --bits W4A4
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import time

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="minilm_rt")
    parser.add_argument("--bits", default="W4A4")
    args = parser.parse_args()
    torch.set_num_threads(1)

    from arnq.arms.shadow import shadow_config
    from arnq.finetune import FinetuneConfig, calib_batches, make_splits
    from arnq.models import load_model
    from arnq.ptq import ptq_config, quantize_

    loaded = load_model(args.model, seed=0)
    target = ptq_config("liu2021", args.bits)
    splits = make_splits(loaded, FinetuneConfig(epochs=2, batch_size=32, train_subset=2000), 0,
                         target.resolved_calib_size)
    batches = calib_batches(loaded, splits.calib, 64)
    model = copy.deepcopy(loaded.model)
    start = time.perf_counter()
    quantize_(model, shadow_config(target, 64), batches)
    seconds = time.perf_counter() - start
    digest = hashlib.sha256()
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        digest.update(name.encode())
        digest.update(tensor.detach().contiguous().cpu().numpy().tobytes())
    print(f"{args.model} {args.bits} liu2021 in-training run: {seconds:.2f} s, model sha256 {digest.hexdigest()[:16]}")


if __name__ == "__main__":
    main()
