"""ERQ: two-step error reduction (Aqer, then Wqer) on top of RepQ-ViT's quantizers.

Zhong et al., "ERQ: Error Reduction for Post-Training Quantization of Vision Transformers"
(ICML 2024); official code zysxmu/ERQ (`test_quant_expand.py`, built on RepQ-ViT).

1. Quantizers as RepQ-ViT (arnq/ptq/repq_vit.py): post-LayerNorm activations reparameterised
   from per-channel to per-tensor (the paper's reparameterisation initialisation), log-sqrt2
   softmax, per-tensor activations and per-channel asymmetric weights by quantile-pair L2 pick.
2. Aqer: for every Linear of the transformer blocks, with its input quantized (x̄) and its
   weights in FP, the closed-form ridge regression
   δ = argmin ||[x̄, 1](W, b)ᵀ + [x̄, 1]δ - y||² + λ1 ||δ||², δ = (ĀᵀĀ + λ1 I)⁻¹ Āᵀ(y - Ā(W, b)ᵀ),
   over the calibration rows (x, y the FP input and output) updates (W, b) in FP.
3. The weight quantizers are re-calibrated on the updated weights.
4. Wqer, per Linear: the columns of (W, b) are quantized in halves (the first half of the columns
   still in FP, in index order, each iteration). Rounding refinement flips, one weight per output
   row at a time (≤ 100 flips), the rounding direction that most lowers the proxy δᵀ(μμᵀ + Σ)δ
   of the quantized input columns; a ridge regression (λ2) then moves the columns still in FP to
   cancel the new error: δ2 = -(I2ᵀI2 + λ2 I)⁻¹ I2ᵀ I1 δ1. The bias column is never quantized.

Every statistic is a sum over the FP calibration rows taken in one pass, so the whole method is
closed form. Defaults: 32 calibration images, λ1 = λ2 = 0.1·coe = 1000 (coe = 10000, the README's
command). Details and deviations: docs/ptq.md#erq.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from arnq.ptq.base import Calibration, PTQConfig, PTQMethod, register_ptq
from arnq.ptq.common import block_linears, rows, run_hooked
from arnq.ptq.repq_vit import RepQViT, RepQViTConfig, channel_qparams
from arnq.quant import QuantConfig
from arnq.quant.modules import QuantLinear
from arnq.quant.quantizer import _TOKEN_MASK, FakeQuantizer

#: calibration rows of the official setup (32 DeiT images x 197 tokens), the reference of `lambda_reference_rows`
OFFICIAL_ROWS = 32 * 197


@dataclass(frozen=True)
class ERQConfig(PTQConfig):
    """ERQ's ridge strengths, refinement budget and switches for the two steps."""

    lambda_aqer: float = 1000.0  # λ1 = 0.1·coe, coe = 10000 (official command); on sums over calibration rows
    lambda_wqer: float = 1000.0  # λ2 = 0.1·coe
    lambda_reference_rows: int | None = None  # None: λ as given (official); N: λ scaled by rows / N
    refine_steps: int = 100  # rounding-refinement flips per output row and iteration (official 100)
    aqer: bool = True
    wqer: bool = True
    log_softmax: bool = True  # RepQ-ViT's log-sqrt2 softmax (ERQ's base framework)
    widen_to_zero: bool = False  # RepQ-ViT's range rule for the per-channel steps (RepQViTConfig.widen_to_zero)

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("lambda_aqer", "lambda_wqer"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"{name}={value!r}: the ridge strength must be > 0 (official 0.1·coe = 1000)")
        ref = self.lambda_reference_rows
        if ref is not None and (isinstance(ref, bool) or not isinstance(ref, int) or ref < 1):
            raise ValueError(f"lambda_reference_rows={ref!r}: use a positive row count (e.g. {OFFICIAL_ROWS}) "
                             "or None for the official absolute λ")
        if isinstance(self.refine_steps, bool) or not isinstance(self.refine_steps, int) or self.refine_steps < 0:
            raise ValueError(f"refine_steps={self.refine_steps!r}: use an integer >= 0 (official 100; 0 = no refinement)")
        if not (self.aqer or self.wqer):
            raise ValueError("aqer=False and wqer=False leave plain RepQ-ViT: switch one on, or use repq_vit")
        if self.aqer and not self.quantizes_activations:
            raise ValueError(f"Aqer compensates activation quantization error and needs a_bits < 16 (got {self.bits}); "
                             "for weight-only ERQ set aqer=False")

    def quant_scheme(self) -> QuantConfig:
        return RepQViTConfig(w_bits=self.w_bits, a_bits=self.a_bits).quant_scheme()

    def ridge(self, value: float, n_rows: int) -> float:
        """λ applied to the sums over `n_rows` calibration rows."""
        return value if self.lambda_reference_rows is None else value * n_rows / self.lambda_reference_rows


# ---------------------------------------------------------------- closed-form steps


def augmented(weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """(W | b) as one (out, in + 1) matrix, or W when there is no bias."""
    return weight if bias is None else torch.cat([weight, bias[:, None]], dim=1)


@torch.no_grad()
def aqer_update(w_cat: torch.Tensor, gram: torch.Tensor, cross: torch.Tensor, lam: float) -> torch.Tensor:
    """Aqer's ridge solution: the (W | b) minimising ||Ā(W | b)ᵀ - Y||² + λ ||(W | b) - w_cat||².

    gram = ĀᵀĀ and cross = ĀᵀY over the calibration rows (Ā the quantized input, with a ones column
    when there is a bias; Y the FP output).
    """
    w = w_cat.double()
    g = gram.double()
    residual = cross.double() - g @ w.T  # Āᵀ(Y - Ā wᵀ)
    delta = torch.linalg.solve(g + lam * torch.eye(len(g), dtype=g.dtype, device=g.device), residual)
    return (w + delta.T).to(w_cat.dtype)


def _grid(w: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor, qmin: int, qmax: int, mode) -> torch.Tensor:
    """Per-row uniform quantize-dequantize of w (O, k) with the given rounding function."""
    s, z = scale[:, None], zero_point[:, None]
    return (mode(w / s) + z).clamp(qmin, qmax).sub(z).mul(s)


@torch.no_grad()
def refine_rounding(err: torch.Tensor, floor_err: torch.Tensor, ceil_err: torch.Tensor, proxy: torch.Tensor,
                    steps: int) -> torch.Tensor:
    """Wqer's rounding refinement: lower δᵀ H δ per row by flipping one rounding direction at a time.

    Each step takes, per row, the weight whose gradient 2Hδ has the largest magnitude and the sign of δ,
    moves it to δ - g snapped to the nearer of its floor/ceil errors, and undoes rows whose proxy rose;
    it stops when every row's move was undone, or after `steps`.
    """
    delta = err.clone()
    h_delta = delta @ proxy  # (O, k); H symmetric
    rows_idx = torch.arange(len(delta), device=delta.device)
    diag = proxy.diagonal()
    for _ in range(steps):
        grad = 2 * h_delta
        grad = torch.where(delta * grad > 0, grad, torch.zeros_like(grad))
        if not bool((grad != 0).any()):
            break
        j = grad.abs().argmax(dim=1)
        old = delta[rows_idx, j]
        target = old - grad[rows_idx, j]
        lo, hi = floor_err[rows_idx, j], ceil_err[rows_idx, j]
        new = torch.where((target - hi).abs() <= (target - lo).abs(), hi, lo)
        step = new - old
        change = 2 * step * h_delta[rows_idx, j] + step.square() * diag[j]  # proxy(new) - proxy(old)
        keep = change <= 0
        if not bool(keep.any()):
            break
        step = torch.where(keep, step, torch.zeros_like(step))
        delta[rows_idx, j] = old + step
        h_delta += step[:, None] * proxy[j]
    return delta


@torch.no_grad()
def wqer_quantize(w_cat: torch.Tensor, gram: torch.Tensor, colsum: torch.Tensor, n_rows: int,
                  scale: torch.Tensor, zero_point: torch.Tensor, qmin: int, qmax: int, has_bias: bool,
                  lam: float, refine_steps: int = 100) -> torch.Tensor:
    """Wqer: the columns of (W | b) quantized in halves, each half's error refined and compensated by ridge regression.

    Returns the new (W | b): weight columns on the per-row grid (scale, zero_point, [qmin, qmax]), the
    bias in FP. Without a bias the last weight column is left in FP (the weight quantizer rounds it).
    """
    w = w_cat.double().clone()
    g, colsum = gram.double(), colsum.double()
    scale, zero_point = scale.double().reshape(-1), zero_point.double().reshape(-1)
    total = w.shape[1]
    start = 0
    while total - start > 1:
        count = (total - start) // 2
        idx = torch.arange(start, start + count, device=w.device)
        rest = torch.arange(start + count, total, device=w.device)
        part = w[:, idx]
        rounded = _grid(part, scale, zero_point, qmin, qmax, torch.round) - part
        floor_err = _grid(part, scale, zero_point, qmin, qmax, torch.floor) - part
        ceil_err = _grid(part, scale, zero_point, qmin, qmax, torch.ceil) - part
        if refine_steps > 0 and n_rows > 1:
            mu = colsum[idx] / n_rows
            cov = (g[idx][:, idx] - n_rows * torch.outer(mu, mu)) / (n_rows - 1)
            rounded = refine_rounding(rounded, floor_err, ceil_err, torch.outer(mu, mu) + cov, refine_steps)
        w[:, idx] = part + rounded
        system = g[rest][:, rest] + lam * torch.eye(len(rest), dtype=g.dtype, device=g.device)
        w[:, rest] -= torch.linalg.solve(system, g[rest][:, idx] @ rounded.T).T
        start += count
    if not has_bias:  # the remaining weight column: plain rounding, as the weight quantizer will do
        last = w[:, -1:]
        w[:, -1:] = _grid(last, scale, zero_point, qmin, qmax, torch.round)
    return w.to(w_cat.dtype)


# ---------------------------------------------------------------- statistics over the calibration set


def _quantized_input(module: QuantLinear, x: torch.Tensor) -> torch.Tensor:
    """What the Linear's matmul sees with its input point on (identity without one)."""
    q = module.input_quantizer
    if q is None:
        return x
    state = q.quantizing
    q.quantizing = True
    try:
        return q(x)
    finally:
        q.quantizing = state


@torch.no_grad()
def layer_statistics(model: nn.Module, names: list[str], batches) -> dict[str, dict[str, Any]]:
    """Per Linear: ĀᵀĀ, ĀᵀY, column sums of Ā and the row count, Ā = [quantized FP input, 1], Y = FP output."""
    stats: dict[str, dict[str, Any]] = {}
    handles = []
    for name in names:
        module = model.get_submodule(name)

        def hook(module, args, output, name=name):
            mask = _TOKEN_MASK.get()
            x = rows(_quantized_input(module, args[0].detach()), mask).double()
            y = rows(output.detach(), mask).double()
            if module.bias is not None:
                x = torch.cat([x, torch.ones_like(x[:, :1])], dim=1)
            s = stats.setdefault(name, {"gram": 0, "cross": 0, "colsum": 0, "n": 0})
            s["gram"] = s["gram"] + x.T @ x
            s["cross"] = s["cross"] + x.T @ y
            s["colsum"] = s["colsum"] + x.sum(0)
            s["n"] += x.shape[0]

        handles.append(module.register_forward_hook(hook))
    was_training = model.training
    model.eval()
    try:
        run_hooked(model, batches, handles)
    finally:
        model.train(was_training)
    missing = [n for n in names if n not in stats or stats[n]["n"] == 0]
    if missing:
        raise RuntimeError(f"ERQ: {missing[0]} saw no calibration rows; check that the batches reach it")
    return stats


def _set_weight_qparams(module: QuantLinear, widen_to_zero: bool) -> None:
    """Per-channel quantile-pair pick (RepQ-ViT) on the module's current weights."""
    wq = module.weight_quantizer
    wq.set_qparams(*channel_qparams(module.weight.detach().T, wq.spec.bits, wq.spec.symmetric, widen_to_zero))


def _write(module: QuantLinear, w_cat: torch.Tensor) -> None:
    with torch.no_grad():
        if module.bias is None:
            module.weight.copy_(w_cat)
        else:
            module.weight.copy_(w_cat[:, :-1])
            module.bias.copy_(w_cat[:, -1])


@register_ptq
class ERQ(PTQMethod):
    name = "erq"
    config_cls = ERQConfig
    quantizes = "W+A"
    granularity = ("as repq_vit (post-LN A reparameterised per-channel -> per-tensor, log-sqrt2 softmax, "
                   "W per-channel asym); block Linears: Aqer ridge update, Wqer refined rounding + ridge")
    default_calib_size = 32
    #: the closed-form steps are cheap; the rounding refinement's flips dominate (python loop per flip)
    smoke_params = {"refine_steps": 10}
    shadow_params = {"refine_steps": 10}
    #: requantized, ERQ's ridge-updated, rounded weights freeze the training forward between its runs while the
    #: FP weights drift, and each run reconstructs toward the drifted FP model (results/COMPOSITION.md, sections 19-20)
    shadow_weight_error = "frozen"
    paper = "ERQ (Zhong et al., ICML 2024), zysxmu/ERQ"
    description = ("RepQ-ViT quantizers, then per Linear a closed-form ridge update of the FP weights against the "
                   "activation quantization error (Aqer), then halving weight quantization with rounding refinement "
                   "and ridge compensation (Wqer); λ1 = λ2 = 1000")

    def _quantize(self, model: nn.Module, cfg: ERQConfig, calib: Calibration) -> None:
        repq = RepQViTConfig(w_bits=cfg.w_bits, a_bits=cfg.a_bits, calib_size=cfg.calib_size,
                             log_softmax=cfg.log_softmax, widen_to_zero=cfg.widen_to_zero)
        RepQViT()._quantize(model, repq, calib)  # quantizers placed and calibrated, all off
        names = [n for n, m in block_linears(model, calib.family)
                 if isinstance(m, QuantLinear) and isinstance(m.weight_quantizer, FakeQuantizer)]
        stats = layer_statistics(model, names, calib.batches)
        for name in names:
            module, s = model.get_submodule(name), stats[name]
            w_cat = augmented(module.weight.detach(), None if module.bias is None else module.bias.detach())
            if cfg.aqer:
                w_cat = aqer_update(w_cat, s["gram"], s["cross"], cfg.ridge(cfg.lambda_aqer, s["n"]))
                _write(module, w_cat)
            _set_weight_qparams(module, cfg.widen_to_zero)
            if cfg.wqer:
                wq = module.weight_quantizer
                w_cat = wqer_quantize(w_cat, s["gram"], s["colsum"], s["n"], wq.scale, wq.zero_point, wq.qmin,
                                      wq.qmax, module.bias is not None, cfg.ridge(cfg.lambda_wqer, s["n"]),
                                      cfg.refine_steps)
                _write(module, w_cat)


__all__ = ["ERQ", "ERQConfig", "aqer_update", "refine_rounding", "wqer_quantize"]
