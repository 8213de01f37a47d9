"""SmoothQuant: migrate activation outliers into the weights with a per-channel scale.

Xiao et al., "SmoothQuant: Accurate and Efficient Post-Training Quantization for Large
Language Models" (ICML 2023); official code mit-han-lab/smoothquant.

For each LayerNorm and the Linears reading it: s_j = max|X_j|^alpha / max|W_j|^(1 - alpha)
(clamped at 1e-5), X_j over the calibration rows (padding dropped), W_j over input column j
of all those Linears. Pre-LN timm models fold 1/s into the LayerNorm exactly; on post-LN BERT,
whose LayerNorm output is also the residual stream, the Linears' inputs are divided by s at
their input quantization point. The Linears' weight columns are multiplied by s, so the
function is unchanged with quantization off. Then weights per output channel symmetric,
activations static per tensor (O3) or per token (`a_granularity="token"`, O1). Needs quantized
activations (a_bits < 16). Details: docs/ptq.md#smoothquant.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from arnq.ptq.base import Calibration, PTQConfig, PTQMethod, register_ptq
from arnq.ptq.common import Batch, ScaledInput, fold_rows, norm_groups, record_input_map
from arnq.quant import QuantConfig, calibrate, prepare


def channel_absmax(model: nn.Module, names: Sequence[str], batches: Sequence[Batch]) -> dict[str, torch.Tensor]:
    """Per-channel max |x| of each named module's input over the calibration rows (padding dropped)."""
    def running_max(acc: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor:
        cur = x.abs().amax(dim=0).float()
        return cur if acc is None else torch.maximum(acc, cur)

    return fold_rows(model, names, batches, running_max)


def smoothing_scale(act_absmax: torch.Tensor, weights: Sequence[torch.Tensor], alpha: float) -> torch.Tensor:
    """s_j = max|X_j|^alpha / max|W_j|^(1-alpha) over the input columns of every weight that reads X."""
    w_absmax = torch.stack([w.detach().abs().amax(dim=0).float() for w in weights]).amax(dim=0).clamp_min(1e-5)
    return (act_absmax.clamp_min(1e-5).pow(alpha) / w_absmax.pow(1 - alpha)).clamp_min(1e-5)


@dataclass(frozen=True)
class SmoothQuantConfig(PTQConfig):
    alpha: float = 0.5
    a_granularity: str = "tensor"  # "tensor" (static, O3) or "token" (dynamic, O1)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 <= self.alpha <= 1:
            raise ValueError(f"alpha={self.alpha!r}: the migration strength must be in [0, 1] (paper 0.5)")
        if self.a_granularity not in ("tensor", "token"):
            raise ValueError(f"a_granularity={self.a_granularity!r}: choose tensor (static) or token (dynamic)")
        if not self.quantizes_activations:
            raise ValueError("smoothquant moves activation outliers into the weights and needs quantized activations "
                             f"(got {self.bits}); for weight-only PTQ use gptq, awq or adaround")

    def quant_scheme(self) -> QuantConfig:
        return QuantConfig(w_bits=self.w_bits, a_bits=self.a_bits, a_granularity=self.a_granularity)


@register_ptq
class SmoothQuant(PTQMethod):
    name = "smoothquant"
    config_cls = SmoothQuantConfig
    quantizes = "W+A"
    granularity = "W per-channel sym; A per-tensor static (or per-token) after per-channel smoothing"
    default_calib_size = 512
    paper = "SmoothQuant (Xiao et al., ICML 2023), mit-han-lab/smoothquant"
    description = "per-channel scale max|X|^a/max|W|^(1-a) folded into LayerNorm (explicit on post-LN BERT)"

    def _quantize(self, model: nn.Module, cfg: SmoothQuantConfig, calib: Calibration) -> None:
        family, batches, device = calib.family, calib.batches, calib.device
        groups = norm_groups(model, family)
        absmax = channel_absmax(model, [g.linears[0] for g in groups], batches)
        scales = {}
        with torch.no_grad():
            for g in groups:
                linears = [model.get_submodule(n) for n in g.linears]
                s = smoothing_scale(absmax[g.linears[0]], [m.weight for m in linears], cfg.alpha)
                scales[g] = s
                for name, m in zip(g.linears, linears, strict=True):
                    m.weight.mul_(s.to(m.weight.dtype))
                    record_input_map(model, name, s)
                if g.foldable:
                    norm = model.get_submodule(g.norm)
                    norm.weight.div_(s.to(norm.weight.dtype))
                    norm.bias.div_(s.to(norm.bias.dtype))
        prepare(model, cfg.quant_scheme(), family)
        for g, s in scales.items():
            if g.foldable:
                continue
            for name in g.linears:
                module = model.get_submodule(name)
                module.input_quantizer = ScaledInput(module.input_quantizer, s.to(module.weight.device))
        calibrate(model, batches, device=device)
