"""What each run of the target method does to a PTQ-aware ARNQ fine-tune, measured at every refresh.

Trains again, into a throwaway cache, the fine-tune of one ok row of FOLDER/rows.jsonl (arm, PTQ method and
seed given; `--arm-params` overrides some of the row's arm parameters, e.g. to try a fix), with a probe around
`NoiseInjector.refresh_target`. At every refresh after the first, on the target's own calibration batches
(the examples the in-training run calibrates on, a fixed set), it records the training model's loss and
accuracy (noise at the schedule's current strength, deterministic at the default rate 1):

- `fp`: with the noise off (the FP model the next run of the target starts from);
- `old`: with the noise of the previous run of the target (what the steps since then trained against);
- `new`: with the noise of the run just made (what the next steps train against).

`new` well above `old` means re-deriving the target's quantizers from the weights the training produced
undoes what the training did; `fp` rising means the training moves the FP weights where only the noisy
forward, not the FP model, is fitted. One JSON line per refresh, printed and appended to
PTQ_refresh_probe.jsonl in FOLDER (with the fine-tune's FP accuracy at the end):

ARNQ_CACHE=CACHE PYTHONPATH=. .venv/bin/python scripts/ptq_checks/refresh_probe.py CACHE FOLDER --ptq P \
    --seed S [--arm-params '{"ptq_refresh": 5}'] [--threads N]
"""
import argparse
import json
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F

from arnq.arms import noise
from arnq.ptq.common import run_model
from harness.pipeline import TrialSpec, _loaded, cached_finetune
from harness.store import row_provenance

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("cache", type=Path, help="cache holding the FP checkpoint (fine-tunes go to a throwaway one)")
parser.add_argument("folder", type=Path, help="results folder whose rows.jsonl names the fine-tune")
parser.add_argument("--ptq", required=True)
parser.add_argument("--arm", default="arnq")
parser.add_argument("--seed", type=int, required=True)
parser.add_argument("--arm-params", default=None, help="JSON object replacing the row's arm parameters")
parser.add_argument("--threads", type=int, default=None)
args = parser.parse_args()
if args.threads:
    torch.set_num_threads(args.threads)

rows = [json.loads(line) for line in (args.folder / "rows.jsonl").read_text().splitlines() if line.strip()]
match = [r for r in rows if r["ptq"] == args.ptq and r["arm"] == args.arm and r["seed"] == args.seed
         and r["status"] == "ok"]
if not match:
    raise SystemExit(f"no ok row with ptq={args.ptq} arm={args.arm} seed={args.seed} in {args.folder}/rows.jsonl")
config = json.loads(match[0]["config"])
if args.arm_params is not None:
    config["arm"] = {**config["arm"], **json.loads(args.arm_params)}
spec = TrialSpec.from_dict(config)
label = json.dumps(spec.arm.changed_params(), sort_keys=True)
provenance = row_provenance()  # the commit of the code this process imported, and whether the tree was dirty


@torch.no_grad()
def _loss_acc(injector: noise.NoiseInjector) -> tuple[float, float]:
    loss = correct = seen = 0.0
    for inputs, labels in injector.shadow.batches:
        logits = run_model(injector.model, inputs)
        loss += float(F.cross_entropy(logits, labels, reduction="sum"))
        correct += int((logits.argmax(-1) == labels).sum())
        seen += len(labels)
    return round(loss / seen, 4), round(100 * correct / seen, 2)


def _fp(injector: noise.NoiseInjector) -> tuple[float, float]:
    alphas = [p.alpha for p in injector.points]
    for p in injector.points:
        p.alpha = 0.0
    try:
        return _loss_acc(injector)
    finally:
        for p, a in zip(injector.points, alphas, strict=True):
            p.alpha = a


original_refresh, original_on_step = noise.NoiseInjector.refresh_target, noise.NoiseInjector.on_step
state = {"step": None}


def on_step(self, step, total):
    state["step"] = step
    for p in self.points:  # the probe's losses use this step's strength (on_step sets it after refreshing)
        p.alpha = self.cfg.alpha(step, total)
    return original_on_step(self, step, total)


def refresh_target(self):
    if state["step"] is None or not self.model.training:  # the run at install time: nothing trained yet
        return original_refresh(self)
    fp, old = _fp(self), _loss_acc(self)
    original_refresh(self)
    out = {"ptq": args.ptq, "arm": args.arm, "arm_params": label, "seed": args.seed, **provenance, "step": state["step"],
           "fp_loss": fp[0], "fp_acc": fp[1], "old_loss": old[0], "old_acc": old[1]}
    out["new_loss"], out["new_acc"] = _loss_acc(self)
    print(json.dumps(out), flush=True)
    with open(args.folder / f"{args.ptq}_refresh_probe.jsonl", "a") as f:
        f.write(json.dumps(out) + "\n")


noise.NoiseInjector.refresh_target, noise.NoiseInjector.on_step = refresh_target, on_step
loaded = _loaded(spec.model, spec.fp_seed, "cpu", args.cache)
with tempfile.TemporaryDirectory() as scratch:  # the fine-tune is trained, never read from a cache
    _, record, _ = cached_finetune(spec, loaded, cache_root=Path(scratch))
end = {"ptq": args.ptq, "arm": args.arm, "arm_params": label, "seed": args.seed, **provenance, "final": True,
       "ft_acc": round(100 * record["ft_acc"], 2),
       "train_loss": [round(h["train_loss"], 4) for h in record["history"]]}
print(json.dumps(end), flush=True)
with open(args.folder / f"{args.ptq}_refresh_probe.jsonl", "a") as f:
    f.write(json.dumps(end) + "\n")
