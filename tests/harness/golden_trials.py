"""Reference rows of the trial pipeline under every arm and three PTQ targets on a toy task.

`python -m tests.harness.golden_trials` rewrites `golden/trials.json` from the current code,
stamped with this machine's fingerprint (tests.golden_machine): run it only when a change is
meant to alter fine-tuned or quantized accuracies.
"""

from __future__ import annotations

import json
from pathlib import Path

GOLDEN = Path(__file__).parent / "golden" / "trials.json"
#: (arm, arm params, PTQ method, bits): every arm; ARNQ on the uniform grid against a calibrator with params and
#: non-calibrator targets, and PTQ-aware toward a reparameterising, a twin-uniform and a weight-rounding target
CASES = [
    ("plain", {}, "minmax", "W4A4"),
    ("arnq", {"delta_observer": "target"}, "minmax", "W4A4"),
    ("arnq", {"delta_observer": "target", "dist": "uniform", "adapt": "outlier"}, "percentile", "W4A4"),
    ("arnq", {"delta_observer": "target", "target": "W"}, "gptq", "W4A16"),
    ("arnq", {"delta_observer": "target"}, "repq_vit", "W6A6"),
    ("arnq_quanttune", {"delta_observer": "target"}, "omse", "W4A4"),
    ("arnq", {}, "repq_vit", "W4A4"),
    ("arnq", {}, "ptq4vit", "W4A4"),
    ("arnq", {"target": "W"}, "gptq", "W4A16"),
    ("arnq_quanttune", {}, "smoothquant", "W4A4"),
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


def compute_cases(cache_root) -> dict[str, dict[str, float]]:
    """{case: FIELDS} of the trial pipeline on the toy vit_mnist stand-in, caching under `cache_root`."""
    import harness.pipeline as pipeline
    from arnq.arms import arm_config
    from arnq.finetune import FinetuneConfig
    from arnq.ptq import ptq_config
    from tests.test_finetune import _loaded

    ft = FinetuneConfig(epochs=1, lr=1e-3, batch_size=32, train_subset=128, val_size=32, diagnostics_batches=1,
                        epoch_q_eval=False)
    loaded = _loaded()
    loaded.fp_accuracy = 0.5
    original = pipeline._loaded
    pipeline._loaded = lambda model, fp_seed, device, cache_root=None: loaded

    def run(arm, params, ptq, bits):
        spec = pipeline.TrialSpec(model="vit_mnist", ptq=ptq_config(ptq, bits, calib_size=32),
                                  arm=arm_config(arm, **params), seed=0, finetune=ft)
        row = pipeline.run_trial(spec, cache_root=cache_root)
        state, _, hit = pipeline.cached_finetune(spec, loaded, cache_root=cache_root)
        assert hit, "the trial's fine-tune was not cached"
        return {**row, "weights_checksum": weights_checksum(state)}

    try:
        return compute(run)
    finally:
        pipeline._loaded = original


def weights_checksum(state) -> float:
    """Sum of every floating tensor of a state dict in float64, with alternating signs per tensor."""
    import torch

    total = torch.zeros((), dtype=torch.float64)
    for i, (_, v) in enumerate(sorted(state.items())):
        if v.is_floating_point():
            total += (-1) ** i * v.double().sum()
    return float(total)


if __name__ == "__main__":
    import tempfile

    from tests.golden_machine import machine_fingerprint

    with tempfile.TemporaryDirectory() as tmp:
        cases = compute_cases(tmp)
    GOLDEN.parent.mkdir(exist_ok=True)
    GOLDEN.write_text(json.dumps({"machine": machine_fingerprint(), "cases": cases}, indent=1, sort_keys=True) + "\n")
    print(f"wrote {GOLDEN}")
