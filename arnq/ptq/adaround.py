"""AdaRound: learn whether each weight rounds up or down (weight-only).

Nagel et al., "Up or Down? Adaptive Rounding for Post-Training Quantization" (ICML 2020);
the layer-wise recipe as in BRECQ's public code and AIMET.

Per Linear, on the round-to-nearest grid (per output row, symmetric, min-max):
W~ = s * clip(floor(W/s) + h(V), qmin, qmax) with the rectified sigmoid
h(V) = clip(sigmoid(V) (zeta - gamma) + gamma, 0, 1), zeta 1.1, gamma -0.1, V initialised so
h(V) equals the fractional part. Loss = sum_out (x W^T - x W~^T)^2 (mean over rows)
+ lam * sum(1 - |2h - 1|^beta), beta annealed 20 -> 2 after a warm-up (`warmup` of `iters`)
without the rounding term; Adam. After optimisation the rounding is hard (h >= 0.5 rounds up).
Blocks are processed in order, each layer on the input rows of the model whose earlier blocks
are already rounded. The defaults (`iters`, `lr`) are a CPU budget, not the paper's:
docs/ptq.md#adaround.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from arnq.ptq.base import Calibration, PTQConfig, PTQMethod, register_ptq
from arnq.ptq.common import collect
from arnq.ptq.gptq import blocks_in_order, install_weights, symmetric_scale
from arnq.quant import calibrate, prepare
from arnq.quant.fake_quant import quant_range

ZETA, GAMMA = 1.1, -0.1


def rectified_sigmoid(v: torch.Tensor) -> torch.Tensor:
    return torch.clamp(torch.sigmoid(v) * (ZETA - GAMMA) + GAMMA, 0, 1)


def beta_schedule(step: int, total: int, warmup: float = 0.2, start: float = 20.0, end: float = 2.0) -> float:
    """Annealed exponent of the rounding regulariser: `start` through the warm-up, then linear to `end`."""
    warm = warmup * total
    if step < warm:
        return start
    return end + (start - end) * max(0.0, 1 - (step - warm) / max(total - warm, 1))


def adaround_layer(
    weight: torch.Tensor,
    x: torch.Tensor,
    bits: int,
    *,
    iters: int = 1000,
    batch_rows: int = 256,
    lam: float = 0.01,
    lr: float = 1e-2,
    warmup: float = 0.2,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """AdaRound one Linear's weight (out, in) on its input rows x (N, in); returns (rounded weight, row scales)."""
    w = weight.detach().float()
    scale = symmetric_scale(w, bits).unsqueeze(1)  # (O, 1)
    qmin, qmax = quant_range(bits, True)
    w_floor = torch.floor(w / scale)
    rest = (w / scale - w_floor).clamp(1e-4, 1 - 1e-4)
    v = (-torch.log((ZETA - GAMMA) / (rest - GAMMA) - 1)).requires_grad_(True)
    opt = torch.optim.Adam([v], lr=lr)
    gen = torch.Generator().manual_seed(seed)
    x = x.float()
    with torch.enable_grad():
        for step in range(iters):
            idx = torch.randint(0, x.shape[0], (min(batch_rows, x.shape[0]),), generator=gen)
            xb = x[idx]
            h = rectified_sigmoid(v)
            w_soft = torch.clamp(w_floor + h, qmin, qmax) * scale
            rec = ((xb @ (w_soft - w).T) ** 2).sum(dim=1).mean()
            loss = rec
            if step >= warmup * iters:
                beta = beta_schedule(step, iters, warmup)
                loss = rec + lam * (1 - (2 * h - 1).abs().pow(beta)).sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    hard = (v.detach() >= 0).float()  # h(V) >= 0.5 <=> V >= 0
    rounded = torch.clamp(w_floor + hard, qmin, qmax) * scale
    return rounded.to(weight.dtype), scale.squeeze(1)


@dataclass(frozen=True)
class AdaRoundConfig(PTQConfig):
    iters: int = 1000
    batch_rows: int = 256
    lam: float = 0.01
    lr: float = 1e-2
    warmup: float = 0.2
    seed: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("iters", "batch_rows"):
            if not (isinstance(getattr(self, name), int) and getattr(self, name) >= 1):
                raise ValueError(f"{name}={getattr(self, name)!r}: use a positive integer")
        if self.lam < 0 or self.lr <= 0:
            raise ValueError(f"lam={self.lam!r}, lr={self.lr!r}: use lam >= 0 (paper 0.01) and lr > 0 (paper 1e-3)")
        if not 0 <= self.warmup < 1:
            raise ValueError(f"warmup={self.warmup!r}: the warm-up fraction must be in [0, 1), e.g. 0.2")


@register_ptq
class AdaRound(PTQMethod):
    name = "adaround"
    config_cls = AdaRoundConfig
    quantizes = "W"
    granularity = "W per output row, symmetric, learned rounding; A: min-max when a_bits < 16"
    default_calib_size = 1024
    #: PTQ-aware ARNQ's repeated in-training runs: cheaper search (cost and effect: bench/README.md §8)
    shadow_params = {"iters": 200}
    paper = "AdaRound (Nagel et al., ICML 2020)"
    description = "layer-wise learned up/down rounding (rectified sigmoid, beta 20->2, lambda 0.01)"
    smoke_params = {"iters": 100}

    def _quantize(self, model: nn.Module, cfg: AdaRoundConfig, calib: Calibration) -> None:
        family, batches, w_bits = calib.family, calib.batches, cfg.w_bits
        prepare(model, cfg.quant_scheme(), family)
        for names in blocks_in_order(model, family):
            inputs = collect(model, names, batches)  # earlier blocks already rounded
            for name in names:
                module = model.get_submodule(name)
                weight, scales = adaround_layer(module.weight, inputs[name], w_bits, iters=cfg.iters,
                                                batch_rows=cfg.batch_rows, lam=cfg.lam, lr=cfg.lr, warmup=cfg.warmup,
                                                seed=cfg.seed)
                install_weights(module, weight.to(module.weight.device), scales.to(module.weight.device), w_bits, None)
                module.weight_quantizer.quantizing = True
        calibrate(model, batches, device=calib.device)  # the edges and (when quantized) the activations
