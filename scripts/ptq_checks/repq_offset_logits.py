"""Logit MSE of RepQ-ViT, official range rule vs widen_to_zero=True, on the tiny models with offset post-LN channels
(tests/ptq/test_repq_vit.py `offset_model`: the first 6 channels of every post-LN LayerNorm scaled 0.25 and shifted +3).

PYTHONPATH=. .venv/bin/python scripts/ptq_checks/repq_offset_logits.py
"""
import copy

import torch

from arnq.batch import forward_logits
from arnq.ptq import RepQViTConfig, quantize_
from arnq.ptq.common import materialize
from tests.conftest import image_batch, text_batch
from tests.ptq.test_repq_vit import offset_model

for family in ("vit", "bert"):
    batch = image_batch if family == "vit" else text_batch
    model = offset_model(family)
    calib = materialize([(batch(16, seed=10 + i), torch.zeros(16)) for i in range(2)])
    x = batch(64, seed=30)
    with torch.no_grad():
        ref = forward_logits(model, x)
        for w, a in ((8, 4), (4, 8), (4, 4), (6, 6), (8, 8)):
            e = {}
            for widen in (False, True):
                q = quantize_(copy.deepcopy(model), RepQViTConfig(w_bits=w, a_bits=a, widen_to_zero=widen), calib)
                e[widen] = float((forward_logits(q, x) - ref).pow(2).mean())
            print(family, f"W{w}A{a}", f"official {e[False]:.3g} widened {e[True]:.3g}",
                  f"widened/official {e[True] / e[False]:.2f}")
