"""Whether the per-tensor activation ranges of RepQ-ViT (proj / fc2 inputs, qkv outputs) straddle 0 on an embedded model.

PYTHONPATH=. .venv/bin/python scripts/ptq_checks/repq_per_tensor_census.py MODEL
"""
import sys

import torch

from arnq.models.fp import load_model
from arnq.ptq.common import collect, materialize
from arnq.train import make_loader

name = sys.argv[1] if len(sys.argv) > 1 else "vit_fmnist"
lm = load_model(name, seed=0, calib_size=32)
batches = materialize(make_loader(lm.data.calib, lm.collate, 32, shuffle=False,
                                  length_bucketing=lm.data.modality == "text"))
names = [n for n, m in lm.model.named_modules() if isinstance(m, torch.nn.Linear) and n.endswith(("proj", "fc2"))]
ins = collect(lm.model, names, batches)
outs = collect(lm.model, [n for n, _ in lm.model.named_modules() if n.endswith("attn.qkv")], batches, what="output")
off = 0
for label, x in [*((f"{n} in", v) for n, v in ins.items()), *((f"{n} out", v) for n, v in outs.items())]:
    flat = x.flatten()
    flat = flat[torch.randperm(flat.numel(), generator=torch.Generator().manual_seed(0))[: 1 << 20]]
    lo, hi = torch.quantile(flat, torch.tensor([0.001, 0.999]))
    off += int(lo > 0 or hi < 0)
    print(f"{label:28s} [{float(lo):8.3f}, {float(hi):8.3f}]")
print(f"{off} of {len(ins) + len(outs)} per-tensor ranges exclude 0")
