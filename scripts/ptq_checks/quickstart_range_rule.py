"""The quickstart's minilm_rt fine-tunes quantized again with RepQ-ViT's former range rule (widen_to_zero: true).

Separates the two places the rule acts in PTQ-aware ARNQ: the final quantization of a fine-tune, and the noise
the ARNQ fine-tune trained with (mirrored from the same quantizer). Reads the fine-tunes from the cache the run
used (they are not rebuilt); prints one line per trial.

ARNQ_CACHE=CACHE PYTHONPATH=. .venv/bin/python scripts/ptq_checks/quickstart_range_rule.py CACHE
"""
import dataclasses
import json
import sys
from pathlib import Path

from harness.pipeline import TrialSpec, _loaded, cached_finetune, ptq_loaders, quantized_accuracy

cache = Path(sys.argv[1])
rows = [json.loads(line) for line in open("results/quickstart/run5/rows.jsonl")]
for r in rows:
    if r["model"] != "minilm_rt":
        continue
    spec = TrialSpec.from_dict(json.loads(r["config"]))
    loaded = _loaded(spec.model, spec.fp_seed, "cpu", cache)
    state, record, hit = cached_finetune(spec, loaded, cache_root=cache)
    calib, test = ptq_loaders(loaded, spec)
    widened = dataclasses.replace(spec.ptq, widen_to_zero=True)
    acc = quantized_accuracy(loaded, state, widened, calib, test, "cpu")
    print(r["arm"], r["seed"], "cache hit", hit, "official q_acc", r["q_acc"], "widened q_acc", round(100 * acc, 2),
          flush=True)
