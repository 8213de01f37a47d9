"""Twin-uniform quantizers of PTQ4ViT for the two skewed activations of a transformer.

A b-bit twin-uniform code spends one bit on choosing between two uniform ranges of 2^(b-1)
levels each (Yuan et al., PTQ4ViT, ECCV 2022):

- post-softmax (values in [0, 1]): R1 = [0, L·Δ1] with a small searched step Δ1 and R2 = [0, 1]
  with the fixed step 1/L, L = 2^(b-1) - 1, Δ1 = 2^-m / L for m in 0..19. Each value is quantized
  in exactly one range: R1 when it rounds inside R1, otherwise R2.
- post-GELU (the fc2 input): a negative range with the fixed step 0.16997/2^(b-1), whose 2^(b-1)
  levels reach GELU's minimum (about -0.17), and a positive range [0, (2^(b-1) - 1)·Δ+] with a
  searched step Δ+.

The quantizers are FakeQuantizer subclasses: `scale` holds the searched step (Δ1 or Δ+),
`zero_point` is 0, and under `arnq.quant.calibrate` they pick the least-MSE step on a sample of
the observed values. PTQ4ViT itself sets the step with its Hessian-guided search
(arnq/ptq/ptq4vit.py). Deviation from the official code and a comparison with uniform codes:
docs/ptq.md#ptq4vit.
"""

from __future__ import annotations

import torch

from arnq.quant.fake_quant import round_ste
from arnq.quant.quantizer import _TOKEN_MASK, FakeQuantizer, QuantSpec, valid_values

#: |min GELU(x)|, the constant of the official code
GELU_MIN_ABS = 0.16997124254703522
#: softmax split candidates 2^-m, m < SOFTMAX_SPLITS (official code)
SOFTMAX_SPLITS = 20
SAMPLE_SIZE = 1 << 18  # observed values kept for the standalone least-MSE calibration
_CHUNK = 16  # candidates evaluated at once by that calibration


def scale_grid(alpha: float = 0.01, beta: float = 1.2, n: int = 100) -> torch.Tensor:
    """PTQ4ViT's candidate factors alpha + i (beta - alpha)/n, i = 0..n, applied to a min-max step."""
    return torch.tensor([alpha + i * (beta - alpha) / n for i in range(n + 1)])


def softmax_small_scales(bits: int, n: int = SOFTMAX_SPLITS) -> torch.Tensor:
    """Candidate small-range steps Δ1 = 2^-m / L, m = 0..n-1, of the twin softmax quantizer."""
    levels = 2 ** (bits - 1) - 1
    return torch.tensor([2.0**-m / levels for m in range(n)])


def _needs_grad(x: torch.Tensor, scale: torch.Tensor | float) -> bool:
    return torch.is_grad_enabled() and (x.requires_grad or (torch.is_tensor(scale) and scale.requires_grad))


def twin_softmax_quantize(x: torch.Tensor, small_scale: torch.Tensor | float, bits: int) -> torch.Tensor:
    """Fake-quantize values in [0, 1]: step `small_scale` on [0, L·Δ1], step 1/L on [0, 1]; broadcasts.

    With autograd the rounding is straight-through (gradient 1 inside the ranges, 0 where clipped);
    without it the same values are computed in place.
    """
    levels = 2 ** (bits - 1) - 1
    fine = x * (1.0 / small_scale)
    in_small = fine < levels + 0.5
    if _needs_grad(x, small_scale):
        small = round_ste(fine.clamp(0, levels)) * small_scale  # clamp first: gradient 1 up to the end levels
        large = round_ste((x * levels).clamp(0, levels)) * (1.0 / levels)
    else:
        small = fine.round_().clamp_(0, levels).mul_(small_scale)
        large = (x * levels).round_().clamp_(0, levels).mul_(1.0 / levels)
    return torch.where(in_small, small, large)


def twin_gelu_quantize(x: torch.Tensor, pos_scale: torch.Tensor | float, bits: int) -> torch.Tensor:
    """Fake-quantize GELU outputs: fixed fine negative range down to -0.17, `pos_scale` steps above 0; broadcasts.

    With autograd the rounding is straight-through (gradient 1 inside the ranges, 0 where clipped);
    without it the same values are computed in place.
    """
    half = 2 ** (bits - 1)
    neg_scale = GELU_MIN_ABS / half
    if _needs_grad(x, pos_scale):
        pos = round_ste((x * (1.0 / pos_scale)).clamp(0, half - 1)) * pos_scale
        neg = round_ste((x * (1.0 / neg_scale)).clamp(-half, 0)) * neg_scale
        return pos + neg  # one of the two is zero, and so is its gradient
    neg = (x * (1.0 / neg_scale)).round_().clamp_(-half, 0).mul_(neg_scale)
    return (x * (1.0 / pos_scale)).round_().clamp_(0, half - 1).mul_(pos_scale).add_(neg)


class TwinUniformQuantizer(FakeQuantizer):
    """A twin-uniform point: one searched step in `scale`; subclasses define the code and its candidates."""

    def __init__(self, bits: int, point: str) -> None:
        super().__init__(QuantSpec(bits, False, "tensor"), point)
        self._samples: list[torch.Tensor] = []
        self._device = torch.device("cpu")
        self._gen = torch.Generator().manual_seed(0)

    def twin(self, x: torch.Tensor, scale: torch.Tensor | float) -> torch.Tensor:
        raise NotImplementedError

    def candidate_scales(self, values: torch.Tensor) -> torch.Tensor:
        """(K,) steps the standalone calibration chooses from."""
        raise NotImplementedError

    def extra_repr(self) -> str:
        state = "quantizing" if self.quantizing else ("observing" if self.observing else "off")
        return f"point={self.point}, bits={self.spec.bits}, twin-uniform, {state}"

    def start_observing(self) -> None:
        self._samples = []
        self.observing = True

    def observe(self, x: torch.Tensor) -> None:
        self._device = x.device
        flat = valid_values(x, _TOKEN_MASK.get()).detach().float().flatten().cpu()
        self._samples.append(self._subsample(flat))

    def _subsample(self, flat: torch.Tensor) -> torch.Tensor:
        if flat.numel() <= SAMPLE_SIZE:
            return flat
        return flat[torch.randperm(flat.numel(), generator=self._gen)[:SAMPLE_SIZE]]

    def finish_observing(self) -> None:
        """Choose the least-MSE step on the observed values."""
        self.observing = False
        if not self._samples:
            raise RuntimeError(
                f"quantization point {self.point} saw no data during calibration; "
                "check that the calibration batches reach this module"
            )
        values = self._subsample(torch.cat(self._samples))
        self._samples = []
        candidates = self.candidate_scales(values)
        errors = torch.cat(
            [(self.twin(values, c[:, None]) - values).square().mean(1) for c in candidates.split(_CHUNK)]
        )
        best = candidates[errors.argmin()].to(self._device)
        self.set_qparams(best, torch.zeros((), device=self._device))

    def quantize(self, x: torch.Tensor) -> torch.Tensor:
        if self.scale is None:
            raise RuntimeError(f"quantization point {self.point} is not calibrated: run calibrate() before convert()")
        return self.twin(x, self.scale.to(x.dtype))


class TwinSoftmaxQuantizer(TwinUniformQuantizer):
    """Post-softmax twin-uniform quantizer; `scale` is the small-range step Δ1 (Δ2 = 1/(2^(b-1) - 1))."""

    def __init__(self, bits: int, point: str = "attn_probs") -> None:
        super().__init__(bits, point)

    def twin(self, x: torch.Tensor, scale: torch.Tensor | float) -> torch.Tensor:
        return twin_softmax_quantize(x, scale, self.spec.bits)

    def candidate_scales(self, values: torch.Tensor) -> torch.Tensor:
        return softmax_small_scales(self.spec.bits)


class TwinGeluQuantizer(TwinUniformQuantizer):
    """Post-GELU twin-uniform quantizer; `scale` is the positive-range step (the negative one is fixed)."""

    def __init__(self, bits: int, point: str = "linear_in") -> None:
        super().__init__(bits, point)

    def twin(self, x: torch.Tensor, scale: torch.Tensor | float) -> torch.Tensor:
        return twin_gelu_quantize(x, scale, self.spec.bits)

    def candidate_scales(self, values: torch.Tensor) -> torch.Tensor:
        top = values.max().clamp_min(1e-8)
        return scale_grid() * top / (2 ** (self.spec.bits - 1) - 0.5)
