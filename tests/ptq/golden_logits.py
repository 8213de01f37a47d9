"""Reference quantized logits of every PTQ method on the tiny models, for the bit-identity test.

One reference per machine: `golden/logits-<fingerprint>.safetensors` (tests.golden_machine).
`python -m tests.ptq.golden_logits` writes this machine's from the current code. Run it to add
a machine (CI's CPU, say) with unchanged library code, or, when a change is meant to alter
quantized outputs, on every machine whose reference is kept (delete the others), and say so in
the commit.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch

from arnq.batch import forward_logits
from tests.conftest import FAMILY_CASES

GOLDEN_DIR = Path(__file__).parent / "golden"
#: methods that search or optimise: on another machine their last-bit differences can pick another
#: candidate or another descent path (tests.golden_machine)
OPTIMISING = ("adaround", "awq", "gptq", "liu2021", "mrem", "noisyquant", "repq_vit")

#: (method, bits, params): every method at a low and a middle bit-width, plus the calibrator variants
#: whose parameters reach the quantizers (percentile 'auto', per-token activations).
CASES: list[tuple[str, str, dict]] = [
    *[(m, b, {}) for m in ("minmax", "ema", "percentile", "omse", "fq_vit", "ptq4vit", "repq_vit", "noisyquant",
                            "smoothquant") for b in ("W4A4", "W6A6")],
    *[(m, b, {}) for m in ("liu2021", "mrem") for b in ("W4A4", "W6A6")],
    *[(m, b, {}) for m in ("gptq", "awq", "adaround") for b in ("W4A16", "W3A16")],
    ("percentile", "W4A4", {"pct": "auto"}),
    ("minmax", "W4A4", {"a_granularity": "token"}),
]


def case_key(family: str, method: str, bits: str, params: dict) -> str:
    extra = ",".join(f"{k}={v}" for k, v in sorted(params.items()))
    return f"{family}/{method}/{bits}" + (f"/{extra}" if extra else "")


def prepared_case(family: str):
    """(model, calibration batches, evaluation inputs) of one family, as the SQNR tests build them."""
    build, make_inputs = FAMILY_CASES[family]
    model = build()
    if family == "vit":
        with torch.no_grad():
            model.cls_token.normal_(std=0.3, generator=torch.Generator().manual_seed(0))
    calib = [(make_inputs(seed=10 + i), torch.zeros(8)) for i in range(2)]
    return model, calib, make_inputs(seed=20)


def reference_path(fingerprint: str) -> Path:
    return GOLDEN_DIR / f"logits-{fingerprint}.safetensors"


def references() -> dict[str, dict[str, torch.Tensor]]:
    """Every stored reference, by the fingerprint of the machine that wrote it."""
    from safetensors.torch import load_file

    return {p.stem.removeprefix("logits-"): load_file(str(p)) for p in sorted(GOLDEN_DIR.glob("logits-*.safetensors"))}


def float_logits() -> dict[str, torch.Tensor]:
    """Each family's unquantized logits on the evaluation inputs: the scale of a case's quantization error."""
    out = {}
    for family in sorted(FAMILY_CASES):
        model, _, evaluation = prepared_case(family)
        with torch.no_grad():
            out[family] = forward_logits(model, evaluation)
    return out


def compute(quantize_case) -> dict[str, torch.Tensor]:
    """Logits of every case; `quantize_case(model, method, bits, params, calib)` returns the quantized model."""
    from arnq.ptq import PTQ_METHODS

    out = {}
    for family in sorted(FAMILY_CASES):
        model, calib, evaluation = prepared_case(family)
        for method, bits, params in CASES:
            full = {**PTQ_METHODS.get(method).smoke_params, **params}
            torch.manual_seed(0)
            q = quantize_case(copy.deepcopy(model), method, bits, full, calib)
            with torch.no_grad():
                out[case_key(family, method, bits, params)] = forward_logits(q, evaluation).contiguous()
    return out


if __name__ == "__main__":
    from safetensors.torch import save_file

    from arnq.ptq import ptq_config, quantize_
    from tests.golden_machine import machine_fingerprint

    path = reference_path(machine_fingerprint())
    path.parent.mkdir(exist_ok=True)
    save_file(compute(lambda model, method, bits, params, calib: quantize_(model, ptq_config(method, bits, **params),
                                                                          calib)), str(path),
              metadata={"machine": machine_fingerprint()})
    print(f"wrote {path}")
