"""vit_fmnist at other widths and depths: the shipped recipe retrained, then PTQ at three bit-widths.

    python results/vit_fmnist/sizes.py --cache DIR [--sizes 64x6 128x3 ...]

Each size WIDTHxDEPTH is the registered `vit_fmnist` spec with `embed_dim` and `depth`
changed (heads of 32 dimensions, as the shipped model's 4 heads of 128), registered in this
process only as `vit_fmnist_<W>x<D>`, trained from scratch with the same recipe (15 epochs,
seed 0) in the cache DIR, and quantized with min-max, RepQ-ViT and PTQ4ViT at W8A8, W4A4
and W3A3. Writes `sizes/<name>/` (rows.jsonl, job.json, report/, fp_train.json: the FP
training record) here; table.py reads them.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import shlex
import sys
from pathlib import Path

from arnq.models import load_model
from arnq.models.fp import TRAIN_INFO_FILE
from arnq.models.registry import MODELS, register_model
from harness.quantize import JOB, QuantizeJob, quantize_into
from harness.report import write_report

HERE = Path(__file__).parent
PTQ = ("minmax", "repq_vit", "ptq4vit")
BITS = ("W8A8", "W4A4", "W3A3")


def variant(width: int, depth: int) -> str:
    """Register the shipped spec at `width` x `depth` under its own name; the name."""
    base = MODELS.get("vit_fmnist")
    name = f"vit_fmnist_{width}x{depth}"
    if name not in MODELS:
        arch = {**base.arch, "embed_dim": width, "depth": depth, "num_heads": max(1, width // 32)}
        register_model(
            dataclasses.replace(
                base,
                name=name,
                description=f"{base.description}, at embed_dim {width}, depth {depth}",
                arch=arch,
                cost=None,
            )
        )
    return name


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", required=True, help="FP cache for the retrained sizes (not the user's)")
    parser.add_argument("--sizes", nargs="+", default=["64x6", "128x3"], metavar="WxD")
    parser.add_argument("--out", default=str(HERE / "sizes"))
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    os.environ["ARNQ_CACHE"] = args.cache  # the quantize job below reads the FP weights from the same cache
    for size in args.sizes:
        try:
            width, depth = (int(v) for v in size.split("x"))
        except ValueError:
            parser.error(f"--sizes {size}: write WIDTHxDEPTH, e.g. 64x6")
        name = variant(width, depth)
        loaded = load_model(name, seed=0, num_threads=args.threads, shipped=False)
        info = json.loads((loaded.checkpoint.parent / TRAIN_INFO_FILE).read_text())
        info["parameters"] = sum(p.numel() for p in loaded.model.parameters())
        del loaded
        run_dir = Path(args.out) / name
        job = QuantizeJob(models=(name,), ptq=PTQ, bits=BITS, threads=args.threads)
        quantize_into(job, run_dir)
        record = json.loads((run_dir / JOB).read_text())
        record["command"] = "python " + shlex.join([sys.argv[0], *(argv or sys.argv[1:])])
        (run_dir / JOB).write_text(json.dumps(record, indent=1) + "\n")
        (run_dir / "fp_train.json").write_text(json.dumps(info, indent=1) + "\n")
        write_report(run_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
