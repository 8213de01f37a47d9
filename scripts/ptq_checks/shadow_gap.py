"""Does PTQ-aware ARNQ lose because it trains against the target's in-training settings?

Takes the plain and PTQ-aware ARNQ fine-tunes of one PTQ method's trials in a results folder's rows.jsonl
(`--folder`, default results/composition/tweets_thesis_b; `--ptq`, default ptq4vit), from the cache in the first
argument where the sweep left them (a fine-tune missing there is trained again, bit for bit the sweep's), and
quantizes each with the settings the ARNQ fine-tune of the same seed trained against: the method's `shadow_params`
(PTQ4ViT: a 20-point grid, one round; ERQ: 10 refinement steps) calibrated on the first `ptq_calib_size` (64)
examples of the trial's calibration draw, as the in-training runs were (`arnq.arms.shadow`). The sweep's q_acc is
the same fine-tune under the method as configured. One JSON line per fine-tune, printed and appended to
PTQ_shadow_gap.jsonl next to those rows:

ARNQ_CACHE=CACHE PYTHONPATH=. .venv/bin/python scripts/ptq_checks/shadow_gap.py CACHE [--ptq P] [--folder F]

Which of the cheaper settings makes the difference: `--settings configured` keeps the method's own settings (only
the calibration examples change), `--calib N` calibrates on the first N examples instead of `ptq_calib_size`'s,
`--arms plain` quantizes only the plain fine-tunes; any of these writes to PTQ_shadow_ablation.jsonl instead,
each line naming its settings.
"""
import argparse
import json
import time
from pathlib import Path

import torch

from arnq.arms.noise import ptq_calib_size
from arnq.arms.shadow import shadow_config
from arnq.finetune import calib_batches, make_splits, quantized_accuracy
from harness.pipeline import TrialSpec, _loaded, cached_finetune, ptq_loaders

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("cache", type=Path)
parser.add_argument("--folder", type=Path, default=Path("results/composition/tweets_thesis_b"),
                    help="results folder whose rows.jsonl names the fine-tunes")
parser.add_argument("--ptq", default="ptq4vit", help="the PTQ method whose trials to take")
parser.add_argument("--threads", type=int, default=2)
parser.add_argument("--settings", choices=("in_training", "configured"), default="in_training",
                    help="in_training: the method's shadow_params; configured: the method as configured")
parser.add_argument("--calib", type=int, default=None, help="calibration examples (default: ptq_calib_size's)")
parser.add_argument("--arms", default="arnq,plain", help="comma-separated arms whose fine-tunes to quantize")
args = parser.parse_args()
cache = args.cache
torch.set_num_threads(args.threads)
ablation = args.settings != "in_training" or args.calib is not None or args.arms != "arnq,plain"
out_file = args.folder / f"{args.ptq}_shadow_{'ablation' if ablation else 'gap'}.jsonl"
rows = [json.loads(line) for line in (args.folder / "rows.jsonl").read_text().splitlines() if line.strip()]
rows_all = [r for r in rows if r["ptq"] == args.ptq and r["status"] == "ok" and r["arm"] in ("plain", "arnq")
            and r["arm_params"] == "{}"]  # plain fine-tuning and the default ARNQ arm
rows = sorted((r for r in rows_all if r["arm"] in args.arms.split(",")), key=lambda r: (r["arm"] != "arnq", r["seed"]))


def _spec(row: dict) -> TrialSpec:
    return TrialSpec.from_dict(json.loads(row["config"]))  # from_dict reads only the spec's own keys


arnq_arm = {r["seed"]: _spec(r).arm for r in rows_all if r["arm"] == "arnq"}  # the noise each seed's ARNQ trained with
for row in rows:
    spec = _spec(row)
    loaded = _loaded(spec.model, spec.fp_seed, "cpu", cache)
    state, record, hit = cached_finetune(spec, loaded, cache_root=cache)
    splits = make_splits(loaded, spec.finetune, spec.seed, spec.ptq.resolved_calib_size)
    n = args.calib or ptq_calib_size(arnq_arm[row["seed"]], spec.ptq)
    shadow = shadow_config(spec.ptq, n, args.settings)
    _, test = ptq_loaders(loaded, spec)
    start = time.perf_counter()
    q_shadow = quantized_accuracy(loaded, state, shadow, calib_batches(loaded, splits.calib, n), test, "cpu")
    configured, in_training = spec.ptq.to_dict(), shadow.to_dict()
    out = {"arm": row["arm"], "seed": row["seed"], "cache_hit": hit, "ft_acc": round(100 * record["ft_acc"], 2),
           "q_acc_configured": row["q_acc"], "q_acc_in_training_settings": round(100 * q_shadow, 2),
           "in_training_settings": {k: v for k, v in in_training.items() if v != configured.get(k)},
           "seconds": round(time.perf_counter() - start, 1)}
    if ablation:
        out["variant"] = {"settings": args.settings, "calib": n, "threads": args.threads}
    print(json.dumps(out), flush=True)
    with open(out_file, "a") as f:
        f.write(json.dumps(out) + "\n")
