"""Uniform affine fake quantization with a straight-through estimator.

Forward math matches `torch.fake_quantize_per_{tensor,channel}_affine` bit for bit
(`q = clamp(round(x * (1/s)) + z, qmin, qmax)`, `x_hat = (q - z) * s`, round half to
even) for the integer zero points in [qmin, qmax] that torch's op accepts; a fractional or
out-of-range zero point follows the same formula. The backward pass is the straight-through
estimator with zero gradient where the value was clipped, as in torch's op.
"""

from __future__ import annotations

import torch

SCALE_EPS = 1e-8


class _RoundSTE(torch.autograd.Function):
    """round() whose gradient is the identity."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return torch.round(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return grad


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """Round to nearest (half to even) with a straight-through gradient."""
    return _RoundSTE.apply(x)


def quant_range(bits: int, symmetric: bool) -> tuple[int, int]:
    """Integer range: [0, 2^b-1] asymmetric, narrow [-(2^(b-1)-1), 2^(b-1)-1] symmetric."""
    if symmetric:
        half = 2 ** (bits - 1) - 1
        return -half, half
    return 0, 2**bits - 1


def calc_qparams(
    min_val: torch.Tensor, max_val: torch.Tensor, bits: int, symmetric: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale and zero point covering [min_val, max_val] (range widened to include 0)."""
    qmin, qmax = quant_range(bits, symmetric)
    min_val = torch.minimum(min_val.float(), torch.zeros_like(min_val, dtype=torch.float32))
    max_val = torch.maximum(max_val.float(), torch.zeros_like(max_val, dtype=torch.float32))
    if symmetric:
        amax = torch.maximum(-min_val, max_val)
        scale = (amax / qmax).clamp_min(SCALE_EPS)
        zero_point = torch.zeros_like(scale)
    else:
        scale = ((max_val - min_val) / (qmax - qmin)).clamp_min(SCALE_EPS)
        zero_point = (qmin - torch.round(min_val / scale)).clamp(qmin, qmax)
    return scale, zero_point


def range_qparams(min_val: torch.Tensor, max_val: torch.Tensor, bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Asymmetric scale and zero point spanning exactly [min_val, max_val] (not widened to include 0).

    Step (max - min) / (2^b - 1) and zero point qmin - round(min / step), not clamped: a range
    entirely above 0 gets a zero point below qmin and all 2^b levels on the range itself (RepQ-ViT's
    `UniformQuantizer`). A range narrower than (2^b - 1) * SCALE_EPS (a constant channel, whose step
    would be 0) gets `calc_qparams`'s parameters instead.
    """
    qmin, qmax = quant_range(bits, False)
    lo, hi = min_val.float(), max_val.float()
    scale = (hi - lo) / (qmax - qmin)
    zero_point = qmin - torch.round(lo / scale.clamp_min(SCALE_EPS))
    wide_scale, wide_zero_point = calc_qparams(lo, hi, bits, False)
    narrow = ~(scale >= SCALE_EPS)  # NaN ranges too
    return torch.where(narrow, wide_scale, scale), torch.where(narrow, wide_zero_point, zero_point)


def fake_quantize_reference(
    x: torch.Tensor,
    scale: torch.Tensor,
    zero_point: torch.Tensor,
    qmin: int,
    qmax: int,
) -> torch.Tensor:
    """Quantize-dequantize `x` with any broadcastable `scale`/`zero_point` (e.g. per token), in plain ops."""
    inv_scale = 1.0 / scale
    q = torch.clamp(round_ste(x * inv_scale) + zero_point, qmin, qmax)
    return (q - zero_point) * scale


def fake_quantize(
    x: torch.Tensor,
    scale: torch.Tensor,
    zero_point: torch.Tensor,
    qmin: int,
    qmax: int,
) -> torch.Tensor:
    """Quantize-dequantize `x`; `scale`/`zero_point` broadcast against `x`.

    The zero point may lie outside [qmin, qmax] (`range_qparams`): the grid is then
    {(q - z) s : q = qmin..qmax}, which need not contain 0. A fractional zero point (RepQ-ViT's
    mean) gives the multiples of s within [(qmin - z) s, (qmax - z) s], as in RepQ-ViT's code.

    Without autograd (evaluation, calibration) the same ops run in place on one
    buffer (no intermediate tensors), with bit-identical results.
    """
    if torch.is_grad_enabled() and (x.requires_grad or scale.requires_grad):
        return fake_quantize_reference(x, scale, zero_point, qmin, qmax)
    out = x * (1.0 / scale)
    return out.round_().add_(zero_point).clamp_(qmin, qmax).sub_(zero_point).mul_(scale)


def broadcast_shape(x: torch.Tensor, axis: int) -> list[int]:
    """Shape that broadcasts a per-`axis` vector against `x`."""
    shape = [1] * x.dim()
    shape[axis] = x.shape[axis]
    return shape


def sqnr_db(reference: torch.Tensor, approx: torch.Tensor) -> float:
    """Signal-to-quantization-noise ratio in dB."""
    noise = (reference.float() - approx.float()).pow(2).mean()
    signal = reference.float().pow(2).mean()
    return float(10 * torch.log10(signal / noise.clamp_min(1e-30)))
