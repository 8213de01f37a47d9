"""Log quantizers for softmax outputs: lower error than uniform at 4 bits, log-sqrt2 finer than log2."""

import torch

from arnq.quant.fake_quant import calc_qparams, fake_quantize, quant_range
from arnq.quant.log_quant import LogQuantizer, log_quantize


def softmax_like(n: int = 512, keys: int = 64, temperature: float = 1.0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    return torch.softmax(temperature * torch.randn(n, keys, generator=gen), dim=-1)


def uniform_error(x: torch.Tensor, bits: int) -> float:
    scale, zp = calc_qparams(x.min(), x.max(), bits, False)
    return float((fake_quantize(x, scale, zp, *quant_range(bits, False)) - x).pow(2).mean())


def calibrated(x: torch.Tensor, bits: int, base: str) -> LogQuantizer:
    q = LogQuantizer(bits, base=base)
    q.start_observing()
    q(x)
    q.finish_observing()
    q.quantizing = True
    return q


def test_log_quantizers_beat_uniform_on_softmax_outputs_at_4_bits():
    """Attention over 64 keys with unit-variance logits (largest probability ~0.3), uniform range calibrated."""
    x = softmax_like()
    uniform = uniform_error(x, 4)
    log2 = float((calibrated(x, 4, "2")(x) - x).pow(2).mean())
    sqrt2 = float((calibrated(x, 4, "sqrt2")(x) - x).pow(2).mean())
    assert log2 < 0.8 * uniform
    assert sqrt2 < log2


def test_log_grids_are_exact_on_their_levels():
    levels = torch.tensor([1.0, 0.5, 0.25, 2.0**-14])
    torch.testing.assert_close(log_quantize(levels, 4, 1.0, "2"), levels)
    sqrt2_levels = torch.tensor([1.0, 2**-0.5, 0.5, 2**-1.5])
    torch.testing.assert_close(log_quantize(sqrt2_levels, 4, 1.0, "sqrt2"), sqrt2_levels)
    # below the smallest level the value is flushed to zero, as the papers' code does
    assert float(log_quantize(torch.tensor([2.0**-20]), 4, 1.0, "2")) == 0.0


def test_sqrt2_delta_is_chosen_from_the_data_and_log2_top_is_one():
    x = softmax_like() * 0.5  # probabilities that never exceed 0.5
    assert float(calibrated(x, 4, "2").scale) == 1.0
    assert float(calibrated(x, 4, "sqrt2").scale) <= 0.5
