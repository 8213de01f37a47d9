"""AdaLog: adaptive-base logarithmic quantizers for post-Softmax and post-GELU activations, searched by FPCS.

Wu et al., "AdaLog: Post-Training Quantization for Vision Transformers with Adaptive Logarithm
Quantizer" (ECCV 2024); official code GoatWu/AdaLog (`quantizers/logarithm.py`,
`quant_layers/matmul.py`, `quant_layers/linear.py`, `configs/*bit.py`).

The AdaLog quantizer codes x in base 2^(q/r), r = 37, q an integer searched in 10..137
(`eq_n` = 128 candidates; q = 37 is log2):

    code = clip(round(-log2((x + shift) / s) · r / q), 0, 2^b - 1)   (codes >= 2^b -> 0)
    x̂   = 2^-floor(code·q / r) · T[code·q mod r] · s - shift,  T[j] = round(2^(-j/r)·(2^(b+1)-2)) / (2^(b+1)-2)

so dequantization is a shift and an r-entry table of (b+1)-bit mantissas (hardware friendly; the
official inference path and search use the same table).

- Post-softmax (every attention's probabilities): s = 1, shift 0; q minimises the attention
  output error ||Q(P) V̂ - P V||² (V̂ the quantized values), per layer.
- Post-GELU (the input of fc2 / BERT's output.dense): shift = |min GELU| = 0.16997 (the official
  bias reparameterisation), q and s searched together by the Fast Progressive Combining Search
  (FPCS) on the layer output error with quantized weights: the best `base_num` = 8 bases at the
  initial s, then 8 x `scale_num` = 16 (q, s) combinations with s on [P90, max] of the positive
  inputs (+ shift), keeping the best `fpcs_width` = 32 and refining each by 4 step offsets for
  `steps` = 6 stages in all, the offset shrinking by 3.5 each stage.

Every other quantizer is RepQ-ViT's (arnq/ptq/repq_vit.py: post-LayerNorm per-channel ->
per-tensor reparameterisation, quantile-pair calibration), which AdaLog's code also applies.
Defaults: 32 calibration images (official `calib_size`). Deviations: docs/ptq.md#adalog.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from arnq.ptq.base import Calibration, PTQConfig, PTQMethod, register_ptq
from arnq.ptq.common import rows, run_hooked
from arnq.ptq.repq_vit import RepQViT, RepQViTConfig
from arnq.quant import QuantConfig
from arnq.quant.modules import QuantLinear, QuantProbs
from arnq.quant.observers import keep_sample
from arnq.quant.quantizer import _TOKEN_MASK, FakeQuantizer, QuantSpec, SectionQuantizer, valid_values
from arnq.quant.twin_uniform import GELU_MIN_ABS

R = 37  # base 2^(q/R); official r = 37.0
Q_START = 10  # candidate q = Q_START .. Q_START + eq_n - 1 (official)
_BUDGET = 1 << 24  # float elements per candidate chunk of a search
_GELU_NAMES = ("GELUActivation", "GELUTanh", "NewGELUActivation", "GELUPytorchTanh", "FastGELUActivation")


def base_candidates(eq_n: int = 128) -> torch.Tensor:
    """The official candidate exponents q = 10 .. 10 + eq_n - 1 of the base 2^(q/37)."""
    return torch.arange(Q_START, Q_START + eq_n, dtype=torch.float32)


def mantissa_table(bits: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """T[j] = 2^(-j/37) rounded to multiples of 1/(2^(b+1) - 2), j = 0..36 (the official dequant table)."""
    unit = 2 ** (bits + 1) - 2
    return torch.round(2.0 ** (-torch.arange(R, dtype=torch.float32, device=device) / R) * unit) / unit


def adalog_levels(bits: int, q: torch.Tensor, scale: torch.Tensor | float, shift: float = 0.0) -> torch.Tensor:
    """(..., 2^b + 1) dequantized values of codes 0..2^b - 1 and of 'beyond the range' (0), for q of shape (...)."""
    code = torch.arange(2**bits, dtype=q.dtype, device=q.device)
    exponent = torch.round(code * q[..., None])  # integers: code and q are
    whole = torch.div(exponent, R, rounding_mode="floor")
    frac = (exponent - whole * R).long()
    values = torch.pow(2.0, -whole) * mantissa_table(bits, q.device).to(q.dtype)[frac]
    values = torch.cat([values, torch.zeros_like(values[..., :1])], dim=-1)
    return values * torch.as_tensor(scale, dtype=q.dtype, device=q.device)[..., None] - shift


def neg_log2(x: torch.Tensor, shift: float = 0.0) -> torch.Tensor:
    """-log2(x + shift), the candidate-independent part of the code."""
    return -torch.log2((x + shift).clamp_min(1e-30))


_MAX_LOG = -math.log2(1e-15)  # the official clamp of (x + shift) / s to [1e-15, 1]


def adalog_codes(neg_log: torch.Tensor, bits: int, q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Codes 0..2^b - 1, or 2^b beyond the range, of values with -log2(x + shift) = neg_log; q, scale broadcast."""
    ratio_log = (neg_log + torch.log2(scale)).clamp(0.0, _MAX_LOG)  # -log2(clamp((x + shift) / s, 1e-15, 1))
    return torch.round(ratio_log * (R / q)).clamp_(max=2**bits).long()


def dequantize_candidates(neg_log: torch.Tensor, bits: int, q: torch.Tensor, scale: torch.Tensor,
                          shift: float = 0.0) -> torch.Tensor:
    """(K, *neg_log.shape) dequantized values for K candidate pairs (q, scale), from precomputed -log2(x + shift)."""
    shape = (-1,) + (1,) * neg_log.dim()
    codes = adalog_codes(neg_log, bits, q.reshape(shape), scale.reshape(shape))
    levels = adalog_levels(bits, q.reshape(-1), scale.reshape(-1), shift)  # (K, 2^b + 1)
    offsets = torch.arange(len(levels), device=codes.device).view(shape) * levels.shape[1]
    return levels.reshape(-1)[codes + offsets]


def adalog_quantize(x: torch.Tensor, bits: int, q: torch.Tensor | float, scale: torch.Tensor | float,
                    shift: float = 0.0) -> torch.Tensor:
    """Quantize-dequantize x on the base-2^(q/37) grid below `scale` (after adding `shift`), table dequant.

    q and scale are scalars, or (K, 1, ..., 1) candidate batches broadcasting against x (result (K, *x.shape)).
    """
    q = torch.as_tensor(q, dtype=x.dtype, device=x.device)
    scale = torch.as_tensor(scale, dtype=x.dtype, device=x.device).expand_as(q)
    out = dequantize_candidates(neg_log2(x, shift), bits, q.reshape(-1), scale.reshape(-1), shift)
    return out[0] if q.dim() == 0 else out


def quantization_error(values: torch.Tensor, bits: int, q: torch.Tensor, scale: float = 1.0,
                       shift: float = 0.0) -> torch.Tensor:
    """(K,) mean squared error of quantizing `values` with each candidate q."""
    chunk = max(1, _BUDGET // max(values.numel(), 1))
    neg_log = neg_log2(values, shift)
    return torch.cat([(dequantize_candidates(neg_log, bits, part, torch.full_like(part, scale), shift) - values)
                      .square().mean(1) for part in q.split(chunk)])


def search_base(values: torch.Tensor, bits: int, scale: float = 1.0, shift: float = 0.0,
                eq_n: int = 128) -> int:
    """The candidate q with the least quantization MSE on `values` (flattened)."""
    q = base_candidates(eq_n).to(values.device)
    errors = quantization_error(values.flatten().float(), bits, q, scale, shift)
    return int(q[errors.argmin()])


class AdaLogQuantizer(FakeQuantizer):
    """A point on an adaptive-base log grid: `scale` the range top s, `base_q` the q of base 2^(q/37), `shift` fixed.

    AdaLog sets (q, s) by its output-error search; under a plain `arnq.quant.calibrate` the point picks
    s (1 for probabilities, else max(x) + shift) and then q by least quantization MSE on a sample.
    """

    def __init__(self, bits: int, point: str = "attn_probs", shift: float = 0.0, fixed_scale: float | None = None,
                 eq_n: int = 128) -> None:
        super().__init__(QuantSpec(bits, False, "tensor"), point)
        self.shift, self.fixed_scale, self.eq_n = float(shift), fixed_scale, eq_n
        self.register_buffer("base_q", None, persistent=False)
        self._samples: torch.Tensor | None = None
        self._gen = torch.Generator().manual_seed(0)

    @property
    def calibrated(self) -> bool:
        return self.scale is not None and self.base_q is not None

    def extra_repr(self) -> str:
        q = None if self.base_q is None else int(self.base_q)
        return super().extra_repr() + f", adalog base 2^({q}/{R}), shift={self.shift:.5f}"

    def set_adalog(self, q: float | torch.Tensor, scale: float | torch.Tensor) -> None:
        device = self.scale.device if self.scale is not None else torch.as_tensor(scale).device
        self.base_q = torch.as_tensor(float(q), device=device)
        self.set_qparams(torch.as_tensor(float(scale), device=device), torch.zeros((), device=device))

    def start_observing(self) -> None:
        self._samples = None
        self.observing = True

    def observe(self, x: torch.Tensor) -> None:
        self._samples = keep_sample(self._samples, valid_values(x, _TOKEN_MASK.get()), self._gen)

    def finish_observing(self) -> None:
        self.observing = False
        if self._samples is None:
            raise RuntimeError(f"quantization point {self.point} saw no data during calibration")
        values, self._samples = self._samples, None
        scale = self.fixed_scale if self.fixed_scale is not None else float(values.max()) + self.shift
        scale = max(scale, 1e-8)
        self.set_adalog(search_base(values, self.spec.bits, scale, self.shift, self.eq_n), scale)

    def quantize(self, x: torch.Tensor) -> torch.Tensor:
        if not self.calibrated:
            raise RuntimeError(f"quantization point {self.point} is not calibrated: run calibrate() before convert()")
        q = adalog_quantize(x.detach(), self.spec.bits, self.base_q, self.scale.to(x.dtype), self.shift)
        return x + (q - x).detach()  # straight-through gradient


# ---------------------------------------------------------------- the searches


def _top(errors: torch.Tensor, k: int) -> torch.Tensor:
    return torch.topk(errors, min(k, len(errors)), largest=False).indices


def fpcs(error: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], q_grid: torch.Tensor, lo: float, hi: float,
         init_scale: float, base_num: int = 8, scale_num: int = 16, width: int = 32, steps: int = 6,
         new_per_candidate: int = 4) -> tuple[float, float]:
    """Fast Progressive Combining Search over (q, scale); `error(q, s)` gives (K,) errors of K pairs.

    The `base_num` best q at `init_scale`; all pairs with `scale_num` scales on [lo, hi]; the best `width`
    pairs, each refined by `new_per_candidate` scale offsets of shrinking size for `steps` - 1 stages.
    """
    q_best = q_grid[_top(error(q_grid, torch.full_like(q_grid, init_scale)), base_num)]
    scales = torch.linspace(lo, hi, scale_num, device=q_grid.device)
    step = (hi - lo) / max(scale_num - 1, 1)
    q_cand = q_best.repeat_interleave(scale_num)
    s_cand = scales.repeat(len(q_best))
    err = error(q_cand, s_cand)
    for _ in range(steps - 1):
        keep = _top(err, width)
        offsets = (torch.linspace(0, 1, new_per_candidate, device=q_grid.device) - 0.5) * step
        step = step / (new_per_candidate - 0.5)
        s_cand = (s_cand[keep][:, None] + offsets[None]).reshape(-1).clamp_min(1e-8)
        q_cand = q_cand[keep].repeat_interleave(new_per_candidate)
        err = error(q_cand, s_cand)
    best = int(err.argmin())
    return float(q_cand[best]), float(s_cand[best])


def positive_range(x: torch.Tensor, low: float = 0.9) -> tuple[float, float]:
    """(P_low, max) of the positive values of x (the official `positive_percentile` bounds)."""
    pos = x[x > 0]
    if pos.numel() == 0:
        return 1e-8, 1e-8
    return float(torch.quantile(pos.float()[: 1 << 24], low)), float(pos.max())


@dataclass(eq=False)
class _Softmax:
    """One attention's probabilities and values, and where its probability point lives."""

    owner: nn.Module
    attr: str
    v_quantizer: FakeQuantizer | None
    probs: list[torch.Tensor]
    v_fp: list[torch.Tensor]
    weights: list[torch.Tensor]

    def search(self, bits: int, eq_n: int, instances: int | None, gen: torch.Generator) -> float:
        """q minimising sum ||Q(P; q) V̂ - P V||² over the kept instances and real query rows."""
        q, errors = self.errors(bits, eq_n, instances, gen)
        return float(q[errors.argmin()])

    def errors(self, bits: int, eq_n: int, instances: int | None,
               gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(candidate q, their errors sum ||Q(P; q) V̂ - P V||²) over the kept instances and real query rows.

        Batches of different sequence lengths (text) are zero-padded to the longest: a padded
        key has probability 0 and a padded query row weight 0, so the errors are those of the
        unpadded batches.
        """
        p = _pad_cat(self.probs, (2, 3)).float()  # (I, H, N, N)
        v = _pad_cat(self.v_fp, (2,)).float()  # (I, H, N, D)
        w = _pad_cat(self.weights, (2,)).float()  # (I, 1, N, 1)
        if instances is not None and len(p) > instances:
            pick = torch.randperm(len(p), generator=gen)[:instances].to(p.device)
            p, v, w = p[pick], v[pick], w[pick]
        vq = v if self.v_quantizer is None else self.v_quantizer.quantize(v)
        target = p @ v
        q = base_candidates(eq_n).to(p.device)
        chunk = max(1, _BUDGET // max(p.numel() + target.numel(), 1))
        errors = []
        neg_log, one = neg_log2(p), torch.ones((), device=p.device)
        for part in q.split(chunk):
            trial = dequantize_candidates(neg_log, bits, part, one.expand_as(part)) @ vq  # (k, I, H, N, D)
            errors.append(((trial - target).square() * w).sum(dim=(1, 2, 3, 4)))
        return q, torch.cat(errors)


def _pad_cat(tensors: list[torch.Tensor], dims: tuple[int, ...]) -> torch.Tensor:
    """The tensors zero-padded at the end of `dims` to the largest size there, concatenated along dim 0."""
    size = {d: max(t.shape[d] for t in tensors) for d in dims}
    padded = []
    for t in tensors:
        pad = [0] * (2 * t.dim())
        for d in dims:
            pad[2 * (t.dim() - 1 - d) + 1] = size[d] - t.shape[d]
        padded.append(nn.functional.pad(t, pad) if any(pad) else t)
    return torch.cat(padded)


@dataclass(eq=False)
class _PostGelu:
    """A Linear reading a GELU output: its FP input and output rows."""

    module: QuantLinear
    inputs: list[torch.Tensor]
    outputs: list[torch.Tensor]

    def search(self, bits: int, cfg: AdaLogConfig, gen: torch.Generator) -> tuple[float, float]:
        x, y = torch.cat(self.inputs).float(), torch.cat(self.outputs).float()
        if cfg.search_rows is not None and len(x) > cfg.search_rows:
            pick = torch.randperm(len(x), generator=gen)[: cfg.search_rows].to(x.device)
            x, y = x[pick], y[pick]
        m = self.module
        wq = m.weight.detach().float() if m.weight_quantizer is None else m.weight_quantizer.quantize(m.weight.detach()).float()
        bias = None if m.bias is None else m.bias.detach().float()
        shift = GELU_MIN_ABS
        lo, hi = positive_range(x)
        lo, hi = lo + shift, hi + shift
        chunk = max(1, _BUDGET // max(x.numel() + y.numel(), 1))
        neg_log = neg_log2(x, shift)

        def error(q: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
            out = []
            for qp, sp in zip(q.split(chunk), s.split(chunk), strict=True):
                xq = dequantize_candidates(neg_log, bits, qp, sp, shift)  # (k, rows, in)
                trial = torch.nn.functional.linear(xq, wq, bias)
                out.append((trial - y).square().mean(dim=(1, 2)))
            return torch.cat(out)

        q_grid = base_candidates(cfg.eq_n).to(x.device)
        init = lo + (hi - lo) * (cfg.eq_n - 2) / max(cfg.eq_n - 1, 1)  # official start: second-largest candidate
        if cfg.fpcs:
            return fpcs(error, q_grid, lo, hi, init, cfg.base_num, cfg.scale_num, cfg.fpcs_width, cfg.steps,
                        max(cfg.eq_n // cfg.fpcs_width, 2))
        q = float(q_grid[error(q_grid, torch.full_like(q_grid, init)).argmin()])  # official non-FPCS path
        scales = torch.linspace(lo, hi, cfg.eq_n, device=x.device)
        return q, float(scales[error(torch.full_like(scales, q), scales).argmin()])


# ---------------------------------------------------------------- the method


@dataclass(frozen=True)
class AdaLogConfig(PTQConfig):
    """AdaLog's search grid (official configs/4bit.py), FPCS shape and CPU subsampling."""

    eq_n: int = 128  # base candidates q = 10..137, and the candidates per FPCS stage
    fpcs: bool = True  # False: the official plain search (q, then eq_n scales)
    steps: int = 6  # FPCS stages
    base_num: int = 8
    scale_num: int = 16
    fpcs_width: int = 32
    softmax: bool = True  # AdaLog on the attention probabilities (False: RepQ-ViT's log-sqrt2)
    gelu: bool = True  # AdaLog on post-GELU activations (False: uniform)
    search_rows: int | None = 2048  # post-GELU rows scoring a candidate (sampled); None = all (official)
    search_instances: int | None = 32  # images / windows / sentences scoring a softmax base (sampled); None = all
    seed: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.quantizes_activations:
            raise ValueError(f"AdaLog quantizes post-Softmax/GELU activations and needs a_bits < 16 (got {self.bits}); "
                             "for weight-only PTQ use gptq, awq or adaround")
        for name in ("eq_n", "steps", "base_num", "scale_num", "fpcs_width"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}={value!r}: use a positive integer (official eq_n=128, steps=6, base_num=8, "
                                 "scale_num=16, fpcs_width=32)")
        if self.base_num > self.eq_n:
            raise ValueError(f"base_num={self.base_num} > eq_n={self.eq_n}: FPCS keeps at most eq_n bases")
        if self.fpcs_width > self.base_num * self.scale_num:
            raise ValueError(f"fpcs_width={self.fpcs_width} exceeds the {self.base_num * self.scale_num} "
                             "(base_num x scale_num) pairs of the first FPCS stage")
        for name in ("search_rows", "search_instances"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"{name}={value!r}: use a positive integer, or None to score everything")
        if not (self.softmax or self.gelu):
            raise ValueError("softmax=False and gelu=False leave plain RepQ-ViT: switch one on, or use repq_vit")

    def quant_scheme(self) -> QuantConfig:
        return RepQViTConfig(w_bits=self.w_bits, a_bits=self.a_bits).quant_scheme()


def _is_gelu(module: Any) -> bool:
    return isinstance(module, nn.GELU) or type(module).__name__ in _GELU_NAMES


def post_gelu_linears(model: nn.Module, family: str) -> list[str]:
    """Names of the Linears whose input is a GELU output (timm mlp.fc2, BERT output.dense)."""
    names = []
    for name, module in model.named_modules():
        prefix = f"{name}." if name else ""
        if family in ("vit", "swin") and all(hasattr(module, a) for a in ("fc1", "act", "fc2")):
            if _is_gelu(module.act) and isinstance(getattr(module, "norm", nn.Identity()), nn.Identity):
                names.append(f"{prefix}fc2")
        elif family == "bert" and hasattr(module, "intermediate") and hasattr(module, "output"):
            if _is_gelu(getattr(module.intermediate, "intermediate_act_fn", None)):
                names.append(f"{prefix}output.dense")
    return names


def _softmax_sites(model: nn.Module, family: str) -> tuple[list[_Softmax], list[Any]]:
    """Every attention's probability point, with hooks that keep its (P, V) pairs during an FP pass."""
    sites, handles = [], []
    for _, attn in model.named_modules():
        if family in ("vit", "swin") and isinstance(getattr(attn, "attn_drop", None), QuantProbs):
            qkv = attn.qkv
            parts = qkv.output_quantizer.parts if isinstance(qkv.output_quantizer, SectionQuantizer) else None
            v_q = parts[2] if parts is not None and isinstance(parts[2], FakeQuantizer) else None
            site = _Softmax(attn.attn_drop, "quantizer", v_q, [], [], [])
            heads = attn.num_heads

            def on_qkv(_m, _a, out, site=site, heads=heads):
                b, n, c3 = out.shape
                v = out.detach()[..., 2 * c3 // 3:].reshape(b, n, heads, -1).transpose(1, 2)  # (B, H, N, D)
                site.v_fp.append(v)

            def on_probs(_m, args, _out, site=site):
                p = args[0].detach()  # (B, H, N, N)
                site.probs.append(p)
                site.weights.append(torch.ones(p.shape[0], 1, p.shape[2], 1, device=p.device))

            handles += [qkv.register_forward_hook(on_qkv), attn.attn_drop.register_forward_hook(on_probs)]
            sites.append(site)
        elif family == "bert" and isinstance(getattr(attn, "probs_quantizer", None), FakeQuantizer):
            value = attn.value
            site = _Softmax(attn, "probs_quantizer", value.output_quantizer, [], [], [])
            heads = attn.config.num_attention_heads

            def on_value(_m, _a, out, site=site, heads=heads):
                b, t, c = out.shape
                site.v_fp.append(out.detach().reshape(b, t, heads, c // heads).transpose(1, 2))

            def on_probs(_m, args, _out, site=site):
                p = args[0].detach()
                mask = _TOKEN_MASK.get()
                w = torch.ones(p.shape[0], p.shape[2], device=p.device) if mask is None else mask.float().to(p.device)
                site.probs.append(p)
                site.weights.append(w[:, None, :, None])

            handles += [value.register_forward_hook(on_value), attn.probs_quantizer.register_forward_hook(on_probs)]
            sites.append(site)
    return sites, handles


def _gelu_sites(model: nn.Module, family: str) -> tuple[list[_PostGelu], list[Any]]:
    sites, handles = [], []
    for name in post_gelu_linears(model, family):
        module = model.get_submodule(name)
        if not isinstance(module, QuantLinear) or module.input_quantizer is None:
            continue
        site = _PostGelu(module, [], [])

        def hook(_m, args, out, site=site):
            mask = _TOKEN_MASK.get()
            site.inputs.append(rows(args[0].detach(), mask))
            site.outputs.append(rows(out.detach(), mask))

        handles.append(module.register_forward_hook(hook))
        sites.append(site)
    return sites, handles


@register_ptq
class AdaLog(PTQMethod):
    name = "adalog"
    config_cls = AdaLogConfig
    quantizes = "W+A"
    granularity = ("as repq_vit (post-LN A reparameterised per-channel -> per-tensor, W per-channel asym); softmax "
                   "and post-GELU A on an adaptive base-2^(q/37) log grid (q, scale by output-error search / FPCS)")
    default_calib_size = 32
    paper = "AdaLog (Wu et al., ECCV 2024), GoatWu/AdaLog"
    description = ("adaptive-base log quantizers (base 2^(q/37), q in 10..137, table dequant) for softmax and "
                   "shifted post-GELU activations; base by attention-output error, (base, scale) by FPCS")
    #: PTQ-aware ARNQ's repeated in-training runs: fewer FPCS stages and subsampled scoring data
    shadow_params = {"steps": 3, "search_rows": 256, "search_instances": 8}
    #: quick runs: every FPCS stage, subsampled scoring data. With fewer stages tiny BERT's W8A8 fell below its
    #: W6A6 (3 stages: 13.5 vs 15.0 dB under RepQ-ViT's official range rule), an under-searched grid
    smoke_params = {"steps": 6, "search_rows": 256, "search_instances": 8}

    def _quantize(self, model: nn.Module, cfg: AdaLogConfig, calib: Calibration) -> None:
        family, bits = calib.family, cfg.a_bits
        RepQViT()._quantize(model, RepQViTConfig(w_bits=cfg.w_bits, a_bits=cfg.a_bits, calib_size=cfg.calib_size),
                            calib)  # quantizers placed and calibrated, all off (the FP function)
        softmax, handles = _softmax_sites(model, family) if cfg.softmax else ([], [])
        gelu, more = _gelu_sites(model, family) if cfg.gelu else ([], [])
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                run_hooked(model, calib.batches, handles + more)
        finally:
            model.train(was_training)
        gen = torch.Generator().manual_seed(cfg.seed)
        with torch.no_grad():
            for site in softmax:
                q = site.search(bits, cfg.eq_n, cfg.search_instances, gen)
                point = AdaLogQuantizer(bits, "attn_probs", 0.0, 1.0, cfg.eq_n)
                point.set_adalog(q, 1.0)
                setattr(site.owner, site.attr, point.to(site.probs[0].device))
            for site in gelu:
                q, scale = site.search(bits, cfg, gen)
                point = AdaLogQuantizer(bits, "linear_in", GELU_MIN_ABS, None, cfg.eq_n)
                point.set_adalog(q, scale)
                site.module.input_quantizer = point.to(site.module.weight.device)


__all__ = ["AdaLog", "AdaLogConfig", "AdaLogQuantizer", "adalog_quantize", "base_candidates", "fpcs",
           "mantissa_table", "search_base"]
