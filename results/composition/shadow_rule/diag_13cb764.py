"""Why PTQ-aware ARNQ trains worse against RepQ-ViT's official range rule (minilm_rt W4A4, the quickstart cells)."""
import dataclasses
import json
import sys
import time
from pathlib import Path

import torch

from harness.pipeline import (
    CALIB_BATCH,
    EVAL_BATCH,
    TrialSpec,
    _loaded,
    cached_finetune,
    make_loader,
    make_splits,
    quantized_accuracy,
)

torch.set_num_threads(1)
cache, variant, seeds = Path(sys.argv[1]), sys.argv[2], [int(s) for s in sys.argv[3].split(",")]
base = None
for line in open("results/quickstart/run5/rows.jsonl"):  # results/quickstart/rows.jsonl when it ran
    r = json.loads(line)
    if r["model"] == "minilm_rt" and r["arm"] == "arnq":
        base = json.loads(r["config"])
        break
for seed in seeds:
    cfg = json.loads(json.dumps(base))
    cfg["seed"] = seed
    if variant == "widened_train":
        cfg["ptq"]["widen_to_zero"] = True
    elif variant == "calib256":
        cfg["arm"]["ptq_calib"] = 256
    elif variant.startswith("refresh"):
        cfg["arm"]["ptq_refresh"] = int(variant[7:])
    elif variant == "plain":
        cfg["arm"] = {"arm": "plain"}
    elif variant != "default":
        raise SystemExit(variant)
    cfg.pop("finetune_key", None)
    spec = TrialSpec.from_dict(cfg)
    loaded = _loaded(spec.model, spec.fp_seed, "cpu", cache)
    t = time.time()
    state, record, hit = cached_finetune(spec, loaded, cache_root=cache)
    ft_s = time.time() - t
    out = {"variant": variant, "seed": seed, "hit": hit, "ft_s": round(ft_s), "ft_acc": record.get("ft_acc")}
    official = dataclasses.replace(spec.ptq, widen_to_zero=False)
    for n in (256, 64):
        splits = make_splits(loaded, spec.finetune, spec.seed, n)
        calib = make_loader(splits.calib, loaded.collate, CALIB_BATCH, shuffle=False, length_bucketing=True)
        test = make_loader(splits.test, loaded.collate, EVAL_BATCH, shuffle=False, length_bucketing=True)
        for rule, ptq in (("official", official), ("widened", dataclasses.replace(official, widen_to_zero=True))):
            if n == 64 and rule == "widened":
                continue
            out[f"q_{rule}_c{n}"] = round(100 * quantized_accuracy(loaded, state, dataclasses.replace(ptq, calib_size=n), calib, test, "cpu"), 2)
    print(json.dumps(out), flush=True)
