"""Wall time of AWQ's scale search with the block loss and the linear loss on a random-init DeiT-Tiny.

OMP_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python scripts/ptq_checks/awq_cost.py
"""
import copy
import time

import timm
import torch

from arnq.ptq import ptq_config, quantize_

torch.manual_seed(0)
model = timm.create_model("deit_tiny_patch16_224", pretrained=False).eval()
gen = torch.Generator().manual_seed(0)
calib = [(torch.randn(16, 3, 224, 224, generator=gen), torch.zeros(16)) for _ in range(2)]
for loss in ("linear", "block"):
    start = time.perf_counter()
    quantize_(copy.deepcopy(model), ptq_config("awq", "W4A16", loss=loss), calib)
    print(loss, f"{time.perf_counter() - start:.1f} s")
