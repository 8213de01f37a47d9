"""The per-epoch training history of a results folder's fine-tunes, from the cache the sweep left them in.

For every ok row of one PTQ method in FOLDER/rows.jsonl, the fine-tune's record (`harness.pipeline.cached_finetune`;
a fine-tune missing from the cache is trained again, bit for bit the sweep's) gives each epoch's mean training
loss and accuracy on the (noisy, for ARNQ) training forward, and the FP validation accuracy. One JSON line per
fine-tune, printed and appended to PTQ_finetune_history.jsonl in FOLDER:

ARNQ_CACHE=CACHE PYTHONPATH=. .venv/bin/python scripts/ptq_checks/finetune_history.py CACHE FOLDER --ptq P
"""
import argparse
import json
from pathlib import Path

from harness.pipeline import TrialSpec, _loaded, cached_finetune

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("cache", type=Path)
parser.add_argument("folder", type=Path, help="results folder whose rows.jsonl names the fine-tunes")
parser.add_argument("--ptq", required=True, help="the PTQ method whose trials to take")
args = parser.parse_args()
rows = [json.loads(line) for line in (args.folder / "rows.jsonl").read_text().splitlines() if line.strip()]
rows = sorted((r for r in rows if r["ptq"] == args.ptq and r["status"] == "ok"),
              key=lambda r: (r["arm"], r["arm_params"], r["seed"]))
for row in rows:
    spec = TrialSpec.from_dict(json.loads(row["config"]))  # from_dict reads only the spec's own keys
    loaded = _loaded(spec.model, spec.fp_seed, "cpu", args.cache)
    _, record, hit = cached_finetune(spec, loaded, cache_root=args.cache)
    out = {"arm": row["arm"], "arm_params": row["arm_params"], "seed": row["seed"], "cache_hit": hit,
           "ft_acc": round(100 * record["ft_acc"], 2),
           "history": [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in h.items()}
                       for h in record["history"]]}
    print(json.dumps(out), flush=True)
    with open(args.folder / f"{args.ptq}_finetune_history.jsonl", "a") as f:
        f.write(json.dumps(out) + "\n")
