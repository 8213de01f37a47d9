"""Which RepQ-ViT range rule PTQ-aware ARNQ should train against (minilm_rt W4A4, the quickstart's cells).

Fine-tunes the quickstart's minilm_rt ARNQ trial (results/quickstart/rows.jsonl) for each seed with one in-training
variant, then quantizes the fine-tune with RepQ-ViT at its official rule on the trial's 256 calibration sentences
(and on 64, and with the widened rule, to see how much the calibration draw and the rule move the number):

- widened: the arm's default (RepQ-ViT's `shadow_params`: the in-training runs widen every per-channel range to 0);
- official: the in-training runs at the official rule (what PTQ-aware ARNQ did before the default changed);
- official_calib256: the official rule, each in-training run calibrated on all 256 calibration sentences;
- plain: plain fine-tuning.

One thread, as a sweep trial (`resources: {cpu: 1}`), so each fine-tune is the sweep's to the bit; one JSON line per
fine-tune. Fine-tunes go to the cache in ARNQ_CACHE (or the first argument).

ARNQ_CACHE=CACHE PYTHONPATH=. .venv/bin/python scripts/ptq_checks/repq_shadow_rule.py CACHE VARIANT SEEDS  # 0,1,2
"""
import dataclasses
import json
import sys
import time
from pathlib import Path

import torch

from arnq.ptq.base import handler_for
from harness.pipeline import TrialSpec, _loaded, cached_finetune, ptq_loaders, quantized_accuracy

torch.set_num_threads(1)
cache, variant, seeds = Path(sys.argv[1]), sys.argv[2], [int(s) for s in sys.argv[3].split(",")]
base = next(json.loads(r["config"]) for r in map(json.loads, open("results/quickstart/rows.jsonl"))
            if r["model"] == "minilm_rt" and r["arm"] == "arnq")
base.pop("finetune_key", None)
if variant.startswith("official"):  # the in-training runs keep the target's own (official) rule
    handler = handler_for(TrialSpec.from_dict(base).ptq)
    handler.shadow_params = {k: v for k, v in handler.shadow_params.items() if k != "widen_to_zero"}
for seed in seeds:
    cfg = json.loads(json.dumps(base)) | {"seed": seed}
    if variant == "official_calib256":
        cfg["arm"]["ptq_calib"] = 256
    elif variant == "plain":
        cfg["arm"] = {"arm": "plain"}
    elif variant not in ("widened", "official"):
        raise SystemExit(f"unknown variant {variant!r}: widened, official, official_calib256 or plain")
    spec = TrialSpec.from_dict(cfg)
    loaded = _loaded(spec.model, spec.fp_seed, "cpu", cache)
    start = time.time()
    state, record, hit = cached_finetune(spec, loaded, cache_root=cache)
    out = {"variant": variant, "seed": seed, "cache_hit": hit, "ft_seconds": round(time.time() - start),
           "ft_acc": round(100 * record["ft_acc"], 2)}
    for n, widen in ((256, False), (256, True), (64, False)):
        calib, test = ptq_loaders(loaded, spec, n)
        ptq = dataclasses.replace(spec.ptq, widen_to_zero=widen, calib_size=n)
        key = f"q_acc_{'widened' if widen else 'official'}_calib{n}"
        out[key] = round(100 * quantized_accuracy(loaded, state, ptq, calib, test, "cpu"), 2)
    print(json.dumps(out), flush=True)
