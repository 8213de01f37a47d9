"""NoisyQuant: a fixed noisy bias added before activation quantization and removed after.

Liu et al., "NoisyQuant: Noisy Bias-Enhanced Post-Training Activation Quantization for
Vision Transformers" (CVPR 2023); official code kriskrisliu/NoisyQuant (`fast_quant.py`).

Every Linear of the blocks computes y = W (Q(x + N) - N) + b, where N is a fixed vector over
input channels (at deployment W N folds into the bias). Per Linear, on FP inputs, three
searches by least output MSE pick the activation clip (`n_clip` candidates), a scalar mean
shift (`n_mean`) and the range of N = mean + e * i / n_range along a fixed per-channel pattern e
(`noise`: "uniform", the paper's U(-1, 1) * step, or "gaussian", the official code's
(2 N(0, 1) - 1) * step), scored on `search_rows` sampled rows. The noise is drawn from a
generator seeded by `seed`, so results repeat. The searches and the deviations from the
paper's code: docs/ptq.md#noisyquant.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from arnq.ptq.base import Calibration, PTQConfig, PTQMethod, register_ptq
from arnq.ptq.common import collect, sample_rows
from arnq.ptq.gptq import blocks_in_order
from arnq.quant import calibrate, prepare
from arnq.quant.fake_quant import fake_quantize
from arnq.quant.quantizer import FakeQuantizer, QuantSpec

CANDIDATE_CHUNK = 8


class NoisyInput(FakeQuantizer):
    """A Linear's input point computing Q(x + N) - N with a fixed per-channel noisy bias N (identity when off)."""

    def __init__(self, bits: int, noise: torch.Tensor) -> None:
        super().__init__(QuantSpec(bits, False, "tensor"), "linear_in")
        self.register_buffer("noisy_bias", noise.detach().clone(), persistent=False)

    def start_observing(self) -> None:  # parameters come from the search, not an observer
        self.observing = False

    def finish_observing(self) -> None:
        self.observing = False

    def quantized_value(self, x: torch.Tensor) -> torch.Tensor:
        n = self.noisy_bias.to(x.dtype)
        return self.quantize(x + n) - n

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.noisy:
            x = self.noise(x)
        return self.quantized_value(x) if self.quantizing else x


def signed_quantize(x: torch.Tensor, step: torch.Tensor, bits: int) -> torch.Tensor:
    """The code's signed b-bit activation code [-2^(b-1), 2^(b-1) - 1] * step (as an offset asymmetric code)."""
    zero = torch.tensor(float(2 ** (bits - 1)), dtype=x.dtype)
    return fake_quantize(x, step, zero, 0, 2**bits - 1)


def _least_error(candidates: torch.Tensor, quantized: Callable[[torch.Tensor], torch.Tensor], weight: torch.Tensor,
                 target: torch.Tensor) -> int:
    """Index of the candidate whose quantized input gives the least output MSE (candidates in chunks)."""
    errors = []
    for chunk in candidates.split(CANDIDATE_CHUNK):
        out = F.linear(quantized(chunk), weight)  # (M, R, O)
        errors.append((out - target).pow(2).mean(dim=(1, 2)))
    return int(torch.cat(errors).argmin())


@torch.no_grad()
def noisy_search(x: torch.Tensor, weight: torch.Tensor, bits: int, pattern: torch.Tensor, n_clip: int = 100,
                 n_mean: int = 40, n_range: int = 100) -> tuple[torch.Tensor, torch.Tensor]:
    """(step, noisy bias (C,)) for inputs x (R, C) of a Linear with (quantized) weight (O, C); `pattern` is e / step."""
    x, weight = x.float(), weight.float()
    target = x @ weight.T
    half = 2 ** (bits - 1) - 1
    clips = x.abs().max() * torch.arange(n_clip, 0, -1) / n_clip
    steps = (clips / half).clamp_min(1e-8)
    # the code clamps to +-clip first; the signed code's own range clips at the same place
    i = _least_error(steps, lambda s: signed_quantize(x.unsqueeze(0).expand(len(s), -1, -1), s.view(-1, 1, 1), bits),
                     weight, target)
    step = steps[i]
    means = step * torch.arange(-n_mean, n_mean) / n_mean

    def shifted(bias: torch.Tensor) -> torch.Tensor:  # (M, C) biases -> (M, R, C) denoised quantized inputs
        b = bias.unsqueeze(1)
        return signed_quantize(x.unsqueeze(0) + b, step, bits) - b

    mean = means[_least_error(means.unsqueeze(1).expand(-1, x.shape[1]), shifted, weight, target)]
    ranges = torch.arange(0, 2 * n_range) / n_range
    biases = mean + (pattern * step).unsqueeze(0) * ranges.unsqueeze(1)  # (M, C)
    bias = biases[_least_error(biases, shifted, weight, target)]
    return step, bias


@dataclass(frozen=True)
class NoisyQuantConfig(PTQConfig):
    noise: str = "uniform"  # "uniform" (paper) or "gaussian" (official code)
    n_clip: int = 100
    n_mean: int = 40
    n_range: int = 100
    search_rows: int = 512
    seed: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.noise not in ("uniform", "gaussian"):
            raise ValueError(f"noise={self.noise!r}: choose uniform (the paper) or gaussian (the official code)")
        for name in ("n_clip", "n_mean", "n_range", "search_rows"):
            if not (isinstance(getattr(self, name), int) and getattr(self, name) >= 1):
                raise ValueError(f"{name}={getattr(self, name)!r}: use a positive integer")


def noise_pattern(channels: int, kind: str, gen: torch.Generator) -> torch.Tensor:
    """The fixed per-channel pattern e / step: U(-1, 1) (paper) or 2 N(0, 1) - 1 (official code)."""
    if kind == "uniform":
        return torch.rand(channels, generator=gen) * 2 - 1
    return torch.randn(channels, generator=gen) * 2 - 1


@register_ptq
class NoisyQuant(PTQMethod):
    name = "noisyquant"
    config_cls = NoisyQuantConfig
    quantizes = "W+A"
    granularity = "W per-channel sym; Linear inputs per-tensor signed with a per-channel noisy bias; matmuls min-max"
    default_calib_size = 256
    #: PTQ-aware ARNQ's repeated in-training runs: cheaper search (cost and effect: bench/README.md §8)
    shadow_params = {"n_clip": 25, "n_mean": 10, "n_range": 25, "search_rows": 128}
    paper = "NoisyQuant (Liu et al., CVPR 2023), kriskrisliu/NoisyQuant"
    description = "fixed per-channel noisy bias before activation quantization (clip, mean and range searched)"

    def _quantize(self, model: nn.Module, cfg: NoisyQuantConfig, calib: Calibration) -> None:
        family, batches, device, a_bits = calib.family, calib.batches, calib.device, cfg.a_bits
        prepare(model, cfg.quant_scheme(), family)
        calibrate(model, batches, device=device)  # min-max everywhere; block Linear inputs are replaced below
        if not cfg.quantizes_activations:
            return
        gen = torch.Generator().manual_seed(cfg.seed)
        for names in blocks_in_order(model, family):  # the blocks' Linears only (edges keep min-max)
            inputs = collect(model, names, batches)  # FP: nothing quantizes before convert
            for name in names:
                module = model.get_submodule(name)
                x = sample_rows(inputs[name], cfg.search_rows, gen)
                weight = module.weight_quantizer.quantize(module.weight.detach())
                pattern = noise_pattern(module.in_features, cfg.noise, gen).to(x.device)
                step, bias = noisy_search(x, weight, a_bits, pattern, cfg.n_clip, cfg.n_mean, cfg.n_range)
                point = NoisyInput(a_bits, bias)
                point.set_qparams(step.reshape(()), torch.tensor(float(2 ** (a_bits - 1))))
                module.input_quantizer = point.to(x.device)
