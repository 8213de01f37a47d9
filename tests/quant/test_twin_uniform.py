"""Twin-uniform quantizers: lower MSE than uniform codes of the same bits, module = function, calibration, STE."""

import pytest
import torch
import torch.nn.functional as F

from arnq.quant.quantizer import FakeQuantizer
from arnq.quant.twin_uniform import (
    GELU_MIN_ABS,
    TwinGeluQuantizer,
    TwinSoftmaxQuantizer,
    scale_grid,
    softmax_small_scales,
    twin_gelu_quantize,
    twin_softmax_quantize,
)


def _softmax_values(seed: int = 0) -> torch.Tensor:
    """Attention-like probabilities: softmax of Gaussian logits x 3 over 64 keys."""
    gen = torch.Generator().manual_seed(seed)
    return torch.softmax(torch.randn(2000, 64, generator=gen) * 3, dim=-1)


def _gelu_values(seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return F.gelu(torch.randn(50_000, generator=gen))


def _signed(x: torch.Tensor, step: torch.Tensor, bits: int) -> torch.Tensor:
    """PTQ4ViT's uniform code, the one the twin quantizers replace: [-2^(b-1), 2^(b-1)-1]·Δ."""
    half = 2 ** (bits - 1)
    return torch.clamp(torch.round(x / step), -half, half - 1) * step


def _unsigned(x: torch.Tensor, step: torch.Tensor, bits: int) -> torch.Tensor:
    return torch.clamp(torch.round(x / step), 0, 2**bits - 1) * step


def _asymmetric(x: torch.Tensor, shrink: torch.Tensor, bits: int) -> torch.Tensor:
    """The project's asymmetric min-max code on [min, shrink·max]."""
    lo, hi = x.min(), x.max() * shrink
    step = (hi - lo) / (2**bits - 1)
    zero = torch.round(-lo / step)
    return (torch.clamp(torch.round(x / step) + zero, 0, 2**bits - 1) - zero) * step


def _best_mse(x, quantize, candidates) -> float:
    """The least MSE over the candidate parameters (every code gets its best step)."""
    return min(float((quantize(x, c) - x).square().mean()) for c in candidates)


# twin MSE / best uniform MSE measured with these inputs: softmax vs signed 0.29/0.17/0.10 and vs unsigned
# 0.82/0.50/0.33 at 4/6/8 bits; GELU vs signed 0.45/0.50/0.55
@pytest.mark.parametrize("bits, vs_signed, vs_unsigned", [(4, 0.4, 0.9), (6, 0.25, 0.6), (8, 0.15, 0.45)])
def test_twin_softmax_beats_uniform_codes_of_the_same_bits(bits, vs_signed, vs_unsigned):
    p = _softmax_values()
    grid = scale_grid()
    twin = _best_mse(p, lambda x, s: twin_softmax_quantize(x, s, bits), softmax_small_scales(bits))
    signed = _best_mse(p, lambda x, s: _signed(x, s, bits), grid * p.max() / (2 ** (bits - 1) - 0.5))
    unsigned = _best_mse(p, lambda x, s: _unsigned(x, s, bits), grid * p.max() / (2**bits - 1))
    assert twin < vs_signed * signed, (twin, signed)
    assert twin < vs_unsigned * unsigned, (twin, unsigned)


@pytest.mark.parametrize("bits", [4, 6, 8])
def test_twin_gelu_beats_the_signed_uniform_code_of_the_same_bits(bits):
    g = _gelu_values()
    candidates = scale_grid() * g.abs().max() / (2 ** (bits - 1) - 0.5)
    twin = _best_mse(g, lambda x, s: twin_gelu_quantize(x, s, bits), candidates)
    signed = _best_mse(g, lambda x, s: _signed(x, s, bits), candidates)
    assert twin < 0.65 * signed, (twin, signed)


def test_twin_gelu_trades_positive_resolution_for_the_negative_tail():
    """At 4 bits an asymmetric code with its best range has the lower total MSE (16 levels on the positive
    tail against 8), while the twin code is far finer on GELU's negative part: the documented trade-off."""
    g, bits = _gelu_values(), 4
    steps = scale_grid() * g.max() / 7.5
    twin_step = min(steps, key=lambda s: float((twin_gelu_quantize(g, s, bits) - g).square().mean()))
    shrink = min(scale_grid(), key=lambda c: float((_asymmetric(g, c, bits) - g).square().mean()))
    twin, asym = twin_gelu_quantize(g, twin_step, bits), _asymmetric(g, shrink, bits)
    neg = g < 0
    assert (asym - g).square().mean() < (twin - g).square().mean()
    assert (twin - g)[neg].square().mean() < 0.05 * (asym - g)[neg].square().mean()


def test_twin_softmax_code_has_the_two_ranges():
    bits, levels = 4, 7
    small = 2.0**-5 / levels
    x = torch.tensor([0.0, 0.5 * small, 3 * small, levels * small, 0.3, 1.0])
    out = twin_softmax_quantize(x, small, bits)
    torch.testing.assert_close(out[:4], torch.tensor([0.0, 0.0, 3 * small, levels * small]))  # fine range
    torch.testing.assert_close(out[4:], torch.tensor([2 / levels, 1.0]))  # coarse range reaches 1
    assert len(set(twin_softmax_quantize(torch.linspace(0, 1, 10001), small, bits).tolist())) <= 2**bits


def test_twin_gelu_code_reaches_the_gelu_minimum():
    bits = 4
    out = twin_gelu_quantize(torch.tensor([-0.2, -GELU_MIN_ABS, -0.015, 0.0, 0.3, 100.0]), 0.1, bits)
    torch.testing.assert_close(out, torch.tensor([-GELU_MIN_ABS, -GELU_MIN_ABS, -GELU_MIN_ABS / 8, 0.0, 0.3, 0.7]))


@pytest.mark.parametrize("cls, values", [(TwinSoftmaxQuantizer, _softmax_values), (TwinGeluQuantizer, _gelu_values)])
def test_quantizer_calibrates_to_the_least_mse_step_and_matches_the_function(cls, values):
    x, bits = values(), 4
    q = cls(bits)
    assert isinstance(q, FakeQuantizer) and not q.calibrated
    q.start_observing()
    q(x)
    q.finish_observing()
    candidates = q.candidate_scales(x.flatten())
    errors = torch.stack([(q.twin(x, c) - x).square().mean() for c in candidates])
    assert float(q.scale) == pytest.approx(float(candidates[errors.argmin()]))
    assert float(q.zero_point) == 0.0
    assert torch.equal(q(x), x)  # off: identity
    q.quantizing = True
    assert torch.equal(q(x), q.twin(x, q.scale))


@pytest.mark.parametrize("quantize, x", [
    (twin_softmax_quantize, _softmax_values()[:50]),
    (twin_gelu_quantize, _gelu_values()[:3000]),
])
def test_autograd_path_matches_the_in_place_path_with_a_straight_through_gradient(quantize, x):
    step = torch.tensor(0.3) if quantize is twin_gelu_quantize else softmax_small_scales(4)[4]
    with torch.no_grad():
        fast = quantize(x, step, 4)
    x = x.clone().requires_grad_(True)
    out = quantize(x, step, 4)
    assert torch.equal(out.detach(), fast)
    out.sum().backward()
    if quantize is twin_gelu_quantize:
        inside, clipped = (x > -GELU_MIN_ABS) & (x < 7 * step) & (x != 0), x > 7 * step
    else:
        fine = x / step  # values between the fine range's last level and the switch are clipped to it
        clipped = (fine > 7) & (fine < 7.5)
        inside = (x > 0) & (x < 1) & ~clipped
    assert inside.sum() > 0.9 * x.numel()
    torch.testing.assert_close(x.grad[inside], torch.ones(int(inside.sum())))
    assert torch.all(x.grad[clipped] == 0)
