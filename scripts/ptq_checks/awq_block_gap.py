"""Block-output MSE of AWQ's linear-loss pick vs its block-loss pick, per q/k/v and fc1 set, on the tiny test
models with planted outlier channels (4 channels x10 in every LayerNorm feeding those sets).

PYTHONPATH=. .venv/bin/python scripts/ptq_checks/awq_block_gap.py FAMILY W_BITS GROUP_SIZE
"""
import copy
import sys

import torch

from arnq.ptq import ptq_config, quantize_
from arnq.ptq.awq import BlockLoss, input_sets, inspected_module, search_scale
from arnq.ptq.common import capture_calls, collect
from arnq.ptq.gptq import blocks_in_order, fit_group_size
from tests.conftest import FAMILY_CASES

family, bits, group_size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
build, make = FAMILY_CASES[family]
model = build()
gen = torch.Generator().manual_seed(0)
with torch.no_grad():
    for name, m in model.named_modules():
        if isinstance(m, torch.nn.LayerNorm) and name.endswith(("norm1", "norm2", "LayerNorm")):
            m.weight[torch.randperm(m.weight.numel(), generator=gen)[:4]] *= 10
calib = [(make(n=8, seed=10 + i), torch.zeros(8)) for i in range(2)]
picked = {loss: quantize_(copy.deepcopy(model), ptq_config("awq", w_bits=bits, a_bits=16, group_size=group_size,
                                                            loss=loss), calib) for loss in ("block", "linear")}
for names in blocks_in_order(model, family):
    for members in input_sets(model, family, names):
        inspected = inspected_module(model, family, members)
        if inspected is None:
            continue
        x = collect(model, [members[0]], calib)[members[0]]
        group = fit_group_size(group_size, x.shape[1]) or x.shape[1]
        loss = BlockLoss(inspected, capture_calls(model, [inspected.capture], calib)[inspected.capture], bits, group)
        grid = search_scale(x, 20, loss)
        got = {k: loss(q.get_submodule(members[0]).weight_quantizer.in_scale) for k, q in picked.items()}
        print(f"{members[0]:45s} block ratio {grid.ratio:.2f} MSE {got['block']:.4g}  linear-loss pick MSE "
              f"{got['linear']:.4g} (+{100 * (got['linear'] / got['block'] - 1):.1f} %)")
