"""Logarithmic quantizers for post-softmax attention probabilities.

- log2 (FQ-ViT's Log-Int-Softmax, `quantizer/log2.py`): q = clip(round(-log2 x), 0, 2^b - 1),
  x_hat = 2^-q, codes past the range (q >= 2^b) -> 0; the range top is 1 (softmax output).
- log-sqrt2 (RepQ-ViT's `LogSqrt2Quantizer`): q = clip(round(-2 log2(x / delta)), 0, 2^b - 1),
  x_hat = delta 2^(-ceil(q / 2)) (1 + (sqrt2 - 1)(q mod 2)), codes q >= 2^b -> 0; delta is
  chosen among the 0.999 / 0.9999 / 0.99999 quantiles of the calibration values (and their max)
  by least L2 error, as the code does.

Both are FakeQuantizer subclasses: they sit where a uniform point sat and obey the same
observing / quantizing switches.
"""

from __future__ import annotations

import math

import torch

from arnq.quant.observers import keep_sample
from arnq.quant.quantizer import _TOKEN_MASK, FakeQuantizer, QuantSpec, valid_values

DELTA_QUANTILES = (0.999, 0.9999, 0.99999)


def log_quantize(x: torch.Tensor, bits: int, delta: torch.Tensor | float, base: str) -> torch.Tensor:
    """Quantize-dequantize non-negative `x` on a log2 or log-sqrt2 grid below `delta`."""
    ratio = (x / delta).clamp_min(1e-30)
    levels = 2**bits
    if base == "2":
        code = torch.round(-torch.log2(ratio))
        beyond = code >= levels
        code = code.clamp(0, levels - 1)
        out = torch.pow(2.0, -code)
    else:
        code = torch.round(-2 * torch.log2(ratio))
        beyond = code >= levels
        code = code.clamp(0, levels - 1)
        out = torch.pow(2.0, -torch.ceil(code / 2)) * (1 + (math.sqrt(2) - 1) * (code % 2))
    return torch.where(beyond, torch.zeros_like(out), out * delta)


class LogQuantizer(FakeQuantizer):
    """A post-softmax point on a log grid: base '2' (FQ-ViT, range top fixed at 1) or 'sqrt2' (RepQ-ViT, searched)."""

    def __init__(self, bits: int, point: str = "attn_probs", base: str = "sqrt2") -> None:
        if base not in ("2", "sqrt2"):
            raise ValueError(f"base={base!r}: choose '2' (FQ-ViT) or 'sqrt2' (RepQ-ViT)")
        super().__init__(QuantSpec(bits, False, "tensor"), point)
        self.base = base
        self._samples: torch.Tensor | None = None
        self._gen = torch.Generator().manual_seed(0)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", log base {self.base}"

    def start_observing(self) -> None:
        self._samples = None
        self.observing = True

    def observe(self, x: torch.Tensor) -> None:
        self._samples = keep_sample(self._samples, valid_values(x, _TOKEN_MASK.get()), self._gen)

    def finish_observing(self) -> None:
        self.observing = False
        if self.base == "2":  # FQ-ViT: softmax outputs are <= 1, the grid top is 1
            delta = torch.tensor(1.0)
        else:
            if self._samples is None:
                raise RuntimeError(f"quantization point {self.point} saw no data during calibration")
            values = self._samples
            candidates = [values.max()] + [torch.quantile(values, q) for q in DELTA_QUANTILES]
            errors = [float((log_quantize(values, self.spec.bits, d, self.base) - values).pow(2).mean())
                      for d in candidates]
            delta = candidates[min(range(len(errors)), key=errors.__getitem__)]
        self._samples = None
        self.set_qparams(delta.reshape(()), torch.zeros(()))

    def quantize(self, x: torch.Tensor) -> torch.Tensor:
        if self.scale is None:
            raise RuntimeError(f"quantization point {self.point} is not calibrated: run calibrate() before convert()")
        q = log_quantize(x, self.spec.bits, self.scale.to(x.dtype), self.base)
        return x + (q - x).detach()  # straight-through gradient


def replace_probs_quantizers(model: torch.nn.Module, bits: int, base: str) -> int:
    """Swap every attention-probability point of a prepared model for a log quantizer; returns how many."""
    count = 0
    for module in model.modules():
        for attr in ("quantizer", "probs_quantizer"):  # timm QuantProbs, HF self-attention
            old = getattr(module, attr, None)
            if isinstance(old, FakeQuantizer) and old.point == "attn_probs":
                setattr(module, attr, LogQuantizer(bits, "attn_probs", base))
                count += 1
    return count
