"""Reference rows of the trial pipeline under every arm and three PTQ targets on a toy task.

`python -m tests.harness.golden_trials` rewrites `golden/trials.json` from the current code:
run it only when a change is meant to alter fine-tuned or quantized accuracies.
"""

from __future__ import annotations

import json
from pathlib import Path

GOLDEN = Path(__file__).parent / "golden" / "trials.json"
#: (arm, arm params, PTQ method, bits): every arm, ARNQ against a calibrator with params and a non-calibrator target
CASES = [
    ("plain", {}, "minmax", "W4A4"),
    ("arnq", {}, "minmax", "W4A4"),
    ("arnq", {"dist": "uniform", "adapt": "outlier"}, "percentile", "W4A4"),
    ("arnq", {"target": "W"}, "gptq", "W4A16"),
    ("arnq", {}, "repq_vit", "W6A6"),
    ("arnq_quanttune", {}, "omse", "W4A4"),
    ("quanttune", {}, "minmax", "W4A4"),
    ("kure", {}, "minmax", "W4A4"),
    ("diffq", {}, "minmax", "W4A4"),
]
#: accuracies of the row, and a float64 checksum of the fine-tuned weights (equal only when training is)
FIELDS = ("ft_acc", "q_acc", "weights_checksum")


def compute(run) -> dict[str, dict[str, float]]:
    """{case: FIELDS}; `run(arm, params, ptq, bits)` returns a trial row with the fine-tune's `weights_checksum`."""
    return {f"{arm}{json.dumps(params, sort_keys=True)}/{ptq}/{bits}": {k: run(arm, params, ptq, bits)[k] for k in FIELDS}
            for arm, params, ptq, bits in CASES}


def weights_checksum(state) -> float:
    """Sum of every floating tensor of a state dict in float64, with alternating signs per tensor."""
    import torch

    total = torch.zeros((), dtype=torch.float64)
    for i, (_, v) in enumerate(sorted(state.items())):
        if v.is_floating_point():
            total += (-1) ** i * v.double().sum()
    return float(total)
