"""Time the Hadamard rotation's calibration on minilm_rt's FP checkpoint, alone, one thread.

Calibrates a fresh copy of the FP model twice per bit-width on the 128 calibration sentences
`arnq quantize` gives the rotation (two batches of 64) and prints the seconds of each run, so
running it at two commits tells whether the code got slower. `--save FILE` stores the FP weights
and calibration batches; `--load FILE` times on those instead of loading the model, so an older
commit (on PYTHONPATH) times on the same inputs without rebuilding the FP checkpoint:

    .venv/bin/python scripts/ptq_checks/hadamard_calib_time.py --save minilm_fp.pt
    PYTHONPATH=OLD_CHECKOUT .venv/bin/python scripts/ptq_checks/hadamard_calib_time.py --load minilm_fp.pt
"""

from __future__ import annotations

import argparse
import time

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bits", nargs="+", default=["W4A4", "W8A8"])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--save", help="store the FP weights and calibration batches here")
    parser.add_argument("--load", help="time on FP weights and calibration batches stored by --save")
    args = parser.parse_args()
    torch.set_num_threads(1)

    from arnq.models import MODELS, load_model
    from arnq.models.build import build_model
    from arnq.ptq.base import ptq_config, quantize_
    from arnq.train import make_loader
    from harness.quantize import CALIB_BATCH

    if args.load:
        saved = torch.load(args.load, weights_only=False)
    else:
        loaded = load_model("minilm_rt", seed=0, calib_size=128, device="cpu", num_threads=1)
        batches = list(make_loader(loaded.data.calib, loaded.collate, CALIB_BATCH, shuffle=False, length_bucketing=True))
        saved = {"state": loaded.model.state_dict(), "batches": batches}
        if args.save:
            torch.save(saved, args.save)
    for bits in args.bits:
        for repeat in range(args.repeats):
            model = build_model(MODELS.get("minilm_rt"))
            model.load_state_dict(saved["state"])
            model.eval()
            start = time.perf_counter()
            quantize_(model, ptq_config("hadamard", bits, calib_size=128), saved["batches"], "cpu")
            print(f"hadamard {bits} run {repeat}: {time.perf_counter() - start:.2f} s", flush=True)


if __name__ == "__main__":
    main()
