"""FQ-ViT: Power-of-Two Factor for LayerNorm inputs and Log-Int-Softmax attention.

Lin et al., "FQ-ViT: Post-Training Quantization for Fully Quantized Vision Transformer"
(IJCAI 2022); official code megvii-research/FQ-ViT.

- PTF: every LayerNorm input (the residual stream) gets a quantization point with one shared
  step and zero point and a per-channel power-of-two factor 2^a, a in {0, 1, 2, 3}, picked by
  least L2 error on the last calibration batch. `ptf=False` quantizes the LayerNorm inputs per
  tensor with min-max instead (the paper's MinMax baseline). The LayerNorm keeps its
  parameters (state_dict keys unchanged).
- LIS: the softmax output on a log2 grid, q = clip(round(-log2 x), 0, 2^b - 1), at
  min(`attn_bits`, a_bits) bits (default 4); `lis=False` keeps the uniform min-max softmax.
- Every other activation per-tensor min-max, weights per-channel min-max.

The formulas, defaults and deviations from the paper's code: docs/ptq.md#fq_vit.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from arnq.ptq.base import Calibration, PTQConfig, PTQMethod, register_ptq
from arnq.ptq.common import rows
from arnq.quant import QuantConfig, calibrate, prepare
from arnq.quant.api import name_matches
from arnq.quant.fake_quant import calc_qparams, fake_quantize
from arnq.quant.log_quant import replace_probs_quantizers
from arnq.quant.quantizer import _TOKEN_MASK, FakeQuantizer, QuantSpec

FACTORS = 4  # 2^0 .. 2^3


class PTFQuantizer(FakeQuantizer):
    """Per-tensor step and zero point with a per-channel (last dim) power-of-two factor."""

    def __init__(self, bits: int, point: str = "norm_in") -> None:
        super().__init__(QuantSpec(bits, False, "tensor"), point)
        self._min: torch.Tensor | None = None
        self._max: torch.Tensor | None = None
        self._last: torch.Tensor | None = None

    def start_observing(self) -> None:
        self._min = self._max = self._last = None
        self.observing = True

    def observe(self, x: torch.Tensor) -> None:
        flat = rows(x.detach().float(), _TOKEN_MASK.get())  # (N, C) real tokens
        lo, hi = flat.amin(dim=0), flat.amax(dim=0)
        self._min = lo if self._min is None else torch.minimum(self._min, lo)
        self._max = hi if self._max is None else torch.maximum(self._max, hi)
        self._last = flat

    def finish_observing(self) -> None:
        self.observing = False
        if self._min is None:
            raise RuntimeError(f"quantization point {self.point} saw no data during calibration")
        scale8, zero_point = calc_qparams(self._min.min(), self._max.max(), self.spec.bits, False)
        base = scale8 / 2 ** (FACTORS - 1)
        candidates = base * 2.0 ** torch.arange(FACTORS, dtype=torch.float32)  # (F,)
        x = self._last.unsqueeze(0)  # (1, N, C)
        q = fake_quantize(x, candidates.view(-1, 1, 1), zero_point, self.qmin, self.qmax)  # (F, N, C)
        errors = (q - x).pow(2).mean(dim=1)  # (F, C)
        self.set_qparams(candidates[errors.argmin(dim=0)], zero_point)  # per-channel step, shared zero point
        self._min = self._max = self._last = None

    def quantize(self, x: torch.Tensor) -> torch.Tensor:
        if self.scale is None:
            raise RuntimeError(f"quantization point {self.point} is not calibrated: run calibrate() before convert()")
        return fake_quantize(x, self.scale.to(x.dtype), self.zero_point.to(x.dtype), self.qmin, self.qmax)


class QuantLayerNorm(nn.LayerNorm):
    """LayerNorm with a quantization point on its input; shares the wrapped module's parameters."""

    def __init__(self, norm: nn.LayerNorm, input_quantizer: FakeQuantizer) -> None:
        nn.Module.__init__(self)
        self.normalized_shape, self.eps, self.elementwise_affine = norm.normalized_shape, norm.eps, norm.elementwise_affine
        self.weight, self.bias = norm.weight, norm.bias
        self.input_quantizer = input_quantizer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(self.input_quantizer(x), self.normalized_shape, self.weight, self.bias, self.eps)


@dataclass(frozen=True)
class FQViTConfig(PTQConfig):
    ptf: bool = True
    lis: bool = True
    attn_bits: int = 4

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (isinstance(self.attn_bits, int) and 2 <= self.attn_bits <= 8):
            raise ValueError(f"attn_bits={self.attn_bits!r}: use 2..8 (FQ-ViT's LIS uses 4)")

    def quant_scheme(self) -> QuantConfig:
        probs_bits = min(self.attn_bits, self.a_bits) if self.quantizes_activations else None
        return QuantConfig(w_bits=self.w_bits, a_bits=self.a_bits, probs_bits=probs_bits)


def quantize_norm_inputs(model: nn.Module, cfg: QuantConfig, ptf: bool) -> int:
    """Put a PTF (or plain per-tensor min-max) point on the input of every LayerNorm inside the transformer."""
    count = 0
    for name, module in list(model.named_modules()):
        if isinstance(module, nn.LayerNorm) and not isinstance(module, QuantLayerNorm) and not name_matches(name, cfg.skip) and not name.endswith("embeddings.LayerNorm"):
            parent_name, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent_name) if parent_name else model, child,
                    QuantLayerNorm(module, PTFQuantizer(cfg.a_bits) if ptf else
                                   FakeQuantizer(cfg.act_spec(cfg.a_bits), "norm_in")))
            count += 1
    return count


@register_ptq
class FQViT(PTQMethod):
    name = "fq_vit"
    config_cls = FQViTConfig
    quantizes = "W+A"
    granularity = ("W per-channel min-max; LayerNorm inputs per-tensor with per-channel power-of-two factors; "
                   "softmax log2 at 4 bits; other A per-tensor min-max")
    default_calib_size = 1000
    paper = "FQ-ViT (Lin et al., IJCAI 2022), megvii-research/FQ-ViT"
    description = "Power-of-Two Factor for LayerNorm inputs, 4-bit log2 (Log-Int-Softmax) attention probabilities"
    holds_batches = False

    def _quantize(self, model: nn.Module, cfg: FQViTConfig, calib: Calibration) -> None:
        family, batches, device, a_bits = calib.family, calib.batches, calib.device, cfg.a_bits
        acts = cfg.quantizes_activations
        qcfg = cfg.quant_scheme()
        prepare(model, qcfg, family)
        if acts:
            quantize_norm_inputs(model, qcfg, cfg.ptf)
        if acts and cfg.lis:
            replace_probs_quantizers(model, min(cfg.attn_bits, a_bits), "2")
        calibrate(model, batches, device=device)
