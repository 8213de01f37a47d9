"""RepQ-ViT: scale reparameterisation of post-LayerNorm activations, log-sqrt2 softmax.

Li et al., "RepQ-ViT: Scale Reparameterization for Post-Training Quantization of Vision
Transformers" (ICCV 2023); official code zkkli/RepQ-ViT.

Post-LayerNorm activations (inputs of qkv, fc1 and Swin's patch-merging reduction) are
calibrated per channel (each channel's quantile pair among 0.999 / 0.9999 / 0.99999 with the
least L2 error), then reparameterised to one per-tensor quantizer whose per-channel factors
are folded into the LayerNorm and the next Linear (pre-LN models) or applied at the Linear's
input point (post-LN BERT); the function is unchanged with quantization off. The softmax output
gets a log-sqrt2 quantizer; every other activation per tensor and the weights per channel,
asymmetric, with the same quantile-pair pick. As in the official `UniformQuantizer`, a per-channel
pair is not widened to include 0 and its zero point is not clamped (`widen_to_zero=True` does both).
The steps, and the deviations from the paper's code: docs/ptq.md#repq_vit.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from arnq.ptq.base import Calibration, PTQConfig, PTQMethod, register_ptq
from arnq.ptq.common import ScaledInput, collect, norm_groups, record_input_map, sample_rows
from arnq.quant import QuantConfig, calibrate, prepare
from arnq.quant.fake_quant import calc_qparams, fake_quantize, quant_range, range_qparams
from arnq.quant.log_quant import replace_probs_quantizers
from arnq.quant.modules import QuantConv2d, QuantLinear

QUANTILES = (0.999, 0.9999, 0.99999)
MAX_ROWS = 1 << 16


@torch.no_grad()
def channel_qparams(x: torch.Tensor, bits: int, symmetric: bool = False,
                    widen_to_zero: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-column (scale, zero point) of x (N, C): the quantile pair with the least L2 error per column.

    Asymmetric columns get RepQ-ViT's parameters: the step spans the quantile pair itself and the zero
    point is not clamped (`range_qparams`), so a column entirely above 0 keeps all 2^b levels on its own
    range. `widen_to_zero` widens each pair to include 0 and clamps the zero point into [qmin, qmax]
    (`calc_qparams`). Symmetric columns are centred on 0 either way.
    """
    x = x.float()
    qmin, qmax = quant_range(bits, symmetric)
    best_err = torch.full((x.shape[1],), float("inf"))
    best_scale, best_zp = torch.zeros(x.shape[1]), torch.zeros(x.shape[1])
    levels = torch.tensor([*QUANTILES, *(1 - q for q in QUANTILES)], dtype=x.dtype, device=x.device)
    bounds = torch.quantile(x, levels, dim=0)  # one sort per column for all six quantiles
    for i in range(len(QUANTILES)):
        hi, lo = bounds[i], bounds[len(QUANTILES) + i]
        if symmetric or widen_to_zero:
            scale, zp = calc_qparams(lo, hi, bits, symmetric)
        else:
            scale, zp = range_qparams(lo, hi, bits)
        err = (fake_quantize(x, scale, zp, qmin, qmax) - x).pow(2).mean(dim=0)
        better = err < best_err
        best_err = torch.where(better, err, best_err)
        best_scale = torch.where(better, scale, best_scale)
        best_zp = torch.where(better, zp, best_zp)
    return best_scale, best_zp


def reparameterisation(scale: torch.Tensor, zero_point: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, float, float]:
    """(r, b, s~, z~) turning per-channel (s_c, z_c) into one per-tensor quantizer (RepQ-ViT step 2).

    s~ and z~ are the plain means, z~ neither rounded nor clamped, as the official code.
    """
    target_scale, target_zp = scale.mean(), zero_point.mean()
    r = scale / target_scale
    b = (-zero_point * scale) / r - (-target_zp * target_scale)
    return r, b, float(target_scale), float(target_zp)


@torch.no_grad()
def fold_into_linear(linear: nn.Linear, r: torch.Tensor, b: torch.Tensor) -> None:
    """W[:, c] <- W[:, c] r_c; bias <- bias + W b (with the new W), so W'(x / r - b) + bias' = W x + bias."""
    linear.weight.mul_(r.to(linear.weight.dtype))
    shift = linear.weight @ b.to(linear.weight.dtype)
    if linear.bias is None:
        linear.bias = nn.Parameter(shift)
    else:
        linear.bias.add_(shift)


@dataclass(frozen=True)
class RepQViTConfig(PTQConfig):
    """RepQ-ViT's switches: the softmax quantizer and how the per-channel ranges become steps."""

    log_softmax: bool = True  # log-sqrt2 post-softmax quantizer (False: uniform, as the ablation)
    #: False: each per-channel quantile pair spans the grid as it is, zero point unclamped (official);
    #: True: the pair is widened to include 0 and the zero point clamped into [0, 2^b - 1]
    widen_to_zero: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("log_softmax", "widen_to_zero"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name}={getattr(self, name)!r}: use true or false")

    def quant_scheme(self) -> QuantConfig:
        return QuantConfig(w_bits=self.w_bits, a_bits=self.a_bits, w_symmetric=False, a_observer="percentile",
                           a_observer_params={"pct": "auto"})


@register_ptq
class RepQViT(PTQMethod):
    name = "repq_vit"
    config_cls = RepQViTConfig
    quantizes = "W+A"
    granularity = ("W per-channel asym (quantile-pair L2 pick); post-LN A per-channel reparameterised to per-tensor; "
                   "softmax log-sqrt2; other A per-tensor asym (quantile-pair L2 pick)")
    default_calib_size = 32
    #: PTQ-aware ARNQ trains against the former range rule (each per-channel pair widened to include 0): on
    #: minilm_rt W4A4 its fine-tunes quantize 1.2 points better with the official rule than fine-tunes trained
    #: against the official rule itself (docs/arms.md#ptq-aware-noise); the final PTQ keeps the official rule
    shadow_params = {"widen_to_zero": True}
    paper = "RepQ-ViT (Li et al., ICCV 2023), zkkli/RepQ-ViT"
    description = "post-LayerNorm per-channel scales reparameterised into LayerNorm/Linear, log-sqrt2 softmax"

    def _quantize(self, model: nn.Module, cfg: RepQViTConfig, calib: Calibration) -> None:
        family, batches, device, a_bits = calib.family, calib.batches, calib.device, cfg.a_bits
        acts = cfg.quantizes_activations
        reparam: dict[str, tuple[float, float]] = {}
        groups = norm_groups(model, family) if acts else []
        inputs = collect(model, [g.linears[0] for g in groups], batches)
        explicit: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        for g in groups:
            x = inputs[g.linears[0]]
            x = sample_rows(x, MAX_ROWS, torch.Generator().manual_seed(0))
            r, b, target_scale, target_zp = reparameterisation(*channel_qparams(x, a_bits,
                                                                                widen_to_zero=cfg.widen_to_zero))
            r, b = r.to(x.device), b.to(x.device)
            with torch.no_grad():
                if g.foldable:
                    norm = model.get_submodule(g.norm)
                    norm.weight.div_(r)
                    norm.bias.copy_(norm.bias / r - b)
            for name in g.linears:
                fold_into_linear(model.get_submodule(name), r, b)
                record_input_map(model, name, r, b)
                reparam[name] = (target_scale, target_zp)
                if not g.foldable:
                    explicit[name] = (r, b)
        prepare(model, cfg.quant_scheme(), family)
        for name, (r, b) in explicit.items():
            module = model.get_submodule(name)
            module.input_quantizer = ScaledInput(module.input_quantizer, r, b)
        if acts and cfg.log_softmax:
            replace_probs_quantizers(model, a_bits, "sqrt2")
        calibrate(model, batches, device=device)
        for module in model.modules():  # weights: per-channel quantile-pair pick on the (reparameterised) weights
            if isinstance(module, (QuantLinear, QuantConv2d)) and module.weight_quantizer is not None:
                wq = module.weight_quantizer
                flat = module.weight.detach().reshape(module.weight.shape[0], -1)
                wq.set_qparams(*channel_qparams(flat.T, wq.spec.bits, wq.spec.symmetric, cfg.widen_to_zero))
        for name, (target_scale, target_zp) in reparam.items():
            model.get_submodule(name).input_quantizer.set_qparams(torch.tensor(target_scale), torch.tensor(target_zp))
