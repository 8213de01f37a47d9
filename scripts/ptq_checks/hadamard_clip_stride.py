"""How often the coarse-to-fine weight clip search (`w_clip_stride`) picks the full search's factor.

Rotates the minilm_rt FP checkpoint as the `hadamard` method does (every rotation, seed 0), then for each block
Linear runs QuaRot's clip search over all 80 shrink factors and the coarse-to-fine search at strides 2, 4 and 8;
prints, per bit-width and stride, the share of rows that get the same factor, the summed clip error against the
full search's, and the seconds on one thread. The stride 4 row is what PTQ-aware ARNQ's in-training runs use
(`Hadamard.shadow_params`).

PYTHONPATH=. .venv/bin/python scripts/ptq_checks/hadamard_clip_stride.py
"""
import time

import torch

from arnq.models import load_model
from arnq.ptq.common import block_linears
from arnq.ptq.hadamard import CLIP_NORM, ROTATIONS, clipped_weight_scale, rotate_model
from arnq.quant.fake_quant import fake_quantize, quant_range


def clip_error(w: torch.Tensor, scale: torch.Tensor, bits: int) -> float:
    qmin, qmax = quant_range(bits, True)
    return float((fake_quantize(w, scale.unsqueeze(1), torch.zeros(1), qmin, qmax) - w).abs().pow(CLIP_NORM).sum())


def main() -> None:
    torch.set_num_threads(1)
    loaded = load_model("minilm_rt", seed=0)
    model = loaded.model.eval()
    rotate_model(model, loaded.spec.family, ROTATIONS, seed=0)
    weights = [linear.weight.detach().float() for _, linear in block_linears(model, loaded.spec.family)]
    print(f"minilm_rt, {len(weights)} rotated block Linears, {sum(w.shape[0] for w in weights)} rows")
    print("| bits | stride | rows with the full search's factor | clip error / full search's | seconds |")
    print("|---|---|---|---|---|")
    for bits in (4, 3):
        start = time.perf_counter()
        full = [clipped_weight_scale(w, bits) for w in weights]
        seconds = time.perf_counter() - start
        full_err = sum(clip_error(w, s, bits) for w, s in zip(weights, full, strict=True))
        print(f"| W{bits} | 1 | 100.0 % | 1.0000 | {seconds:.2f} |")
        for stride in (2, 4, 8):
            start = time.perf_counter()
            fast = [clipped_weight_scale(w, bits, stride) for w in weights]
            seconds = time.perf_counter() - start
            same = sum(int((a == b).sum()) for a, b in zip(full, fast, strict=True))
            rows = sum(a.numel() for a in full)
            err = sum(clip_error(w, s, bits) for w, s in zip(weights, fast, strict=True))
            print(f"| W{bits} | {stride} | {100 * same / rows:.1f} % | {err / full_err:.4f} | {seconds:.2f} |")


if __name__ == "__main__":
    main()
