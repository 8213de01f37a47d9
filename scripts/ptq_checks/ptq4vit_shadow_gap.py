"""Does ARNQ toward PTQ4ViT lose because it trains against PTQ4ViT's in-training settings? (minilm_tweets W4A4)

Takes the plain and PTQ-aware ARNQ fine-tunes of the PTQ4ViT trials in
results/composition/tweets_thesis_b/rows.jsonl (from the cache in the first argument, where the sweep left them;
a fine-tune missing there is trained again, bit for bit the sweep's) and quantizes each with the settings the
ARNQ fine-tune of the same seed trained against: PTQ4ViT's `shadow_params` (a 20-point grid, one round) calibrated
on the first `ptq_calib_size` (64) examples of the trial's 256-example calibration draw, as the in-training runs
were (`arnq.arms.shadow`). The
sweep's q_acc is the same fine-tune under the method as configured (100 points, 3 rounds, 256 examples). One JSON
line per fine-tune, printed and appended to ptq4vit_shadow_gap.jsonl next to those rows:

ARNQ_CACHE=CACHE PYTHONPATH=. .venv/bin/python scripts/ptq_checks/ptq4vit_shadow_gap.py CACHE [THREADS]
"""
import json
import sys
import time
from pathlib import Path

import torch

from arnq.arms.noise import ptq_calib_size
from arnq.arms.shadow import shadow_config
from arnq.finetune import calib_batches, make_splits, quantized_accuracy
from harness.pipeline import TrialSpec, _loaded, cached_finetune, ptq_loaders

FOLDER = Path("results/composition/tweets_thesis_b")
cache = Path(sys.argv[1])
torch.set_num_threads(int(sys.argv[2]) if len(sys.argv) > 2 else 2)
rows = [json.loads(line) for line in (FOLDER / "rows.jsonl").read_text().splitlines() if line.strip()]
rows = sorted((r for r in rows if r["ptq"] == "ptq4vit"), key=lambda r: (r["arm"] != "arnq", r["seed"]))


def _spec(row: dict) -> TrialSpec:
    cfg = json.loads(row["config"])
    cfg.pop("finetune_key", None)
    return TrialSpec.from_dict(cfg)


arnq_arm = {r["seed"]: _spec(r).arm for r in rows if r["arm"] == "arnq"}  # the noise each seed's ARNQ trained with
for row in rows:
    spec = _spec(row)
    loaded = _loaded(spec.model, spec.fp_seed, "cpu", cache)
    state, record, hit = cached_finetune(spec, loaded, cache_root=cache)
    splits = make_splits(loaded, spec.finetune, spec.seed, spec.ptq.resolved_calib_size)
    n = ptq_calib_size(arnq_arm[row["seed"]], spec.ptq)
    shadow = shadow_config(spec.ptq, n)
    _, test = ptq_loaders(loaded, spec)
    start = time.perf_counter()
    q_shadow = quantized_accuracy(loaded, state, shadow, calib_batches(loaded, splits.calib, n), test, "cpu")
    configured, in_training = spec.ptq.to_dict(), shadow.to_dict()
    out = {"arm": row["arm"], "seed": row["seed"], "cache_hit": hit, "ft_acc": round(100 * record["ft_acc"], 2),
           "q_acc_configured": row["q_acc"], "q_acc_in_training_settings": round(100 * q_shadow, 2),
           "in_training_settings": {k: v for k, v in in_training.items() if v != configured.get(k)},
           "seconds": round(time.perf_counter() - start, 1)}
    print(json.dumps(out), flush=True)
    with open(FOLDER / "ptq4vit_shadow_gap.jsonl", "a") as f:
        f.write(json.dumps(out) + "\n")
