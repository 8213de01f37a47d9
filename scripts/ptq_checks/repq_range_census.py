"""Post-LayerNorm per-channel steps of an embedded model: RepQ-ViT's official rule vs widened to include 0.

PYTHONPATH=. .venv/bin/python scripts/ptq_checks/repq_range_census.py MODEL A_BITS  (e.g. vit_fmnist 4)
"""
import sys

import torch

from arnq.models.fp import load_model
from arnq.ptq.common import collect, materialize, norm_groups, sample_rows
from arnq.ptq.repq_vit import MAX_ROWS, channel_qparams, reparameterisation
from arnq.quant import detect_family
from arnq.quant.fake_quant import fake_quantize, quant_range
from arnq.train import make_loader

name = sys.argv[1] if len(sys.argv) > 1 else "vit_fmnist"
bits = int(sys.argv[2]) if len(sys.argv) > 2 else 4
lm = load_model(name, seed=0, calib_size=32)
text = lm.data.modality == "text"
batches = materialize(make_loader(lm.data.calib, lm.collate, 32, shuffle=False, length_bucketing=text))
model, family = lm.model, detect_family(lm.model)
groups = norm_groups(model, family)
inputs = collect(model, [g.linears[0] for g in groups], batches)
qmin, qmax = quant_range(bits, False)
tot = {True: [0.0, 0.0], False: [0.0, 0.0]}
ratios, err_ratios, n_ch = [], [], 0
for g in groups:
    x = sample_rows(inputs[g.linears[0]], MAX_ROWS, torch.Generator().manual_seed(0)).float()
    n_ch += x.shape[1]
    per = {}
    for widen in (True, False):
        s, z = channel_qparams(x, bits, widen_to_zero=widen)
        err_c = (fake_quantize(x, s, z, qmin, qmax) - x).pow(2).mean(0)
        r, b, ts, tz = reparameterisation(s, z)
        rep = (fake_quantize(x / r - b, torch.tensor(ts), torch.tensor(tz), qmin, qmax) + b) * r
        tot[widen][0] += float(err_c.sum())
        tot[widen][1] += float((rep - x).pow(2).mean(0).sum())
        per[widen] = (s, z, err_c)
    moved = per[True][0] != per[False][0]
    ratios += (per[True][0] / per[False][0])[moved].tolist()
    err_ratios += (per[True][2] / per[False][2])[moved].tolist()
    print(f"{g.norm:40s} channels {x.shape[1]:4d} range off 0: {int(moved.sum()):3d}  "
          f"zp official [{float(per[False][1].min()):.0f}, {float(per[False][1].max()):.0f}]")
r = torch.tensor(ratios)
e = torch.tensor(err_ratios)
print(f"{name} A{bits}: {len(ratios)} of {n_ch} post-LN channels have a quantile range excluding 0")
if len(ratios):
    print(f"  step widened / official: median {float(r.median()):.2f}, max {float(r.max()):.2f}")
    print(f"  L2 error widened / official on those channels: median {float(e.median()):.2f}, max {float(e.max()):.2f}")
for widen in (False, True):
    print(f"  widen_to_zero={widen}: sum of per-channel MSE {tot[widen][0]:.4g} (per-channel), "
          f"{tot[widen][1]:.4g} (after reparameterisation to one per-tensor quantizer)")
rows_off, rows = 0, 0
wratios = []
for m in model.modules():
    if isinstance(m, torch.nn.Linear):
        w = m.weight.detach().float()
        s1, _ = channel_qparams(w.T, bits, widen_to_zero=True)
        s0, _ = channel_qparams(w.T, bits, widen_to_zero=False)
        moved = s1 != s0
        rows_off += int(moved.sum())
        rows += w.shape[0]
        wratios += (s1 / s0)[moved].tolist()
print(f"  weights (FP, before reparameterisation): {rows_off} of {rows} Linear rows have a quantile range excluding 0"
      + (f", step ratio max {max(wratios):.2f}" if wratios else ""))
