"""AWQ: activation-aware weight quantization (weight-only, per-group, with clip search).

Lin et al., "AWQ: Activation-aware Weight Quantization for LLM Compression and
Acceleration" (MLSys 2024); official code mit-han-lab/llm-awq.

For each set of Linears that read the same input: a per-input-channel scale
s = s_X^ratio / sqrt(max(s) min(s)), s_X = mean |x|, with the ratio on a grid of `n_grid` that
gives the least output MSE of Q(W diag(s)) diag(s)^-1; then per (output row, group) the clip
max|w| (1 - i / n_grid), i < max_shrink * n_grid, with the least error of the group's partial
outputs. Groups of `group_size` input columns with asymmetric zero points (per row where
`group_size` does not divide the layer's inputs). The scale stays inside the weight quantizer
(it quantizes W diag(s) and divides s back out), the same function as folding 1/s into the
previous op for weight-only deployment. Deviations from the paper's code: docs/ptq.md#awq.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from arnq.ptq.base import Calibration, PTQConfig, PTQMethod, register_ptq
from arnq.ptq.common import collect, norm_groups, sample_rows
from arnq.ptq.gptq import GroupWeightQuantizer, blocks_in_order, fit_group_size
from arnq.quant import calibrate, prepare
from arnq.quant.fake_quant import calc_qparams, fake_quantize, quant_range


def group_qparams(w: torch.Tensor, bits: int, clip: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Asymmetric scale and zero point per (row, group) of grouped weights (O, G, gs), optionally clipped to +-clip."""
    lo, hi = w.amin(dim=-1), w.amax(dim=-1)
    if clip is not None:
        lo, hi = torch.maximum(lo, -clip), torch.minimum(hi, clip)
    return calc_qparams(lo, hi, bits, False)


def pseudo_quantize(w: torch.Tensor, bits: int, group_size: int, clip: torch.Tensor | None = None) -> torch.Tensor:
    """Asymmetric per-group round-to-nearest of (..., O, I) weights."""
    *lead, out_f, in_f = w.shape
    grouped = w.reshape(*lead, out_f, in_f // group_size, group_size)
    scale, zp = group_qparams(grouped, bits, clip)
    qmin, qmax = quant_range(bits, False)
    return fake_quantize(grouped, scale.unsqueeze(-1), zp.unsqueeze(-1), qmin, qmax).reshape(w.shape)


@torch.no_grad()
def awq_search_scale(w: torch.Tensor, x: torch.Tensor, bits: int, group_size: int, n_grid: int = 20
                     ) -> tuple[torch.Tensor, float]:
    """Per-input-channel scale s (I,) minimising ||x W^T - x (Q(W diag s) diag s^-1)^T||^2; returns (s, ratio)."""
    x_mean = x.abs().mean(dim=0).clamp_min(1e-8)
    reference = x @ w.T
    best, best_err, best_ratio = torch.ones_like(x_mean), float("inf"), 0.0
    for i in range(n_grid):
        ratio = i / n_grid
        s = x_mean.pow(ratio)
        s = s / (s.max() * s.min()).sqrt()
        w_hat = pseudo_quantize(w * s, bits, group_size) / s
        err = float(((x @ w_hat.T - reference) ** 2).mean())
        if err < best_err:
            best, best_err, best_ratio = s, err, ratio
    return best, best_ratio


@torch.no_grad()
def awq_search_clip(w: torch.Tensor, x: torch.Tensor, bits: int, group_size: int, n_grid: int = 20,
                    max_shrink: float = 0.5) -> torch.Tensor:
    """Clip max per (row, group) (O, G) minimising the error of each group's partial outputs over x (N, I)."""
    out_f, in_f = w.shape
    n_groups = in_f // group_size
    wg = w.reshape(out_f, n_groups, group_size)  # (O, G, gs)
    xg = x.reshape(-1, n_groups, group_size)  # (N, G, gs)
    reference = torch.einsum("ngk,ogk->ong", xg, wg)
    org_max = wg.abs().amax(dim=-1)  # (O, G)
    best_clip, best_err = org_max.clone(), torch.full_like(org_max, float("inf"))
    qmin, qmax = quant_range(bits, False)
    for i in range(int(max_shrink * n_grid)):
        clip = org_max * (1 - i / n_grid)
        scale, zp = group_qparams(wg, bits, clip)
        q = fake_quantize(wg.clamp(-clip.unsqueeze(-1), clip.unsqueeze(-1)), scale.unsqueeze(-1), zp.unsqueeze(-1),
                          qmin, qmax)
        err = ((torch.einsum("ngk,ogk->ong", xg, q) - reference) ** 2).mean(dim=1)  # (O, G)
        better = err < best_err
        best_err = torch.where(better, err, best_err)
        best_clip = torch.where(better, clip, best_clip)
    return best_clip


@dataclass(frozen=True)
class AWQConfig(PTQConfig):
    group_size: int | None = 128  # None: per output row
    n_grid: int = 20
    max_shrink: float = 0.5
    clip: bool = True
    n_rows: int = 4096
    n_clip_rows: int = 512
    seed: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.group_size is not None and not (isinstance(self.group_size, int) and self.group_size >= 1):
            raise ValueError(f"group_size={self.group_size!r}: use a positive integer (e.g. 128) or null for per-row")
        if not (isinstance(self.n_grid, int) and self.n_grid >= 2):
            raise ValueError(f"n_grid={self.n_grid!r}: use an integer >= 2 (the code uses 20)")
        if not 0 < self.max_shrink < 1:
            raise ValueError(f"max_shrink={self.max_shrink!r}: the largest clip shrink must be in (0, 1), e.g. 0.5")
        for name in ("n_rows", "n_clip_rows"):
            if not (isinstance(getattr(self, name), int) and getattr(self, name) >= 1):
                raise ValueError(f"{name}={getattr(self, name)!r}: use a positive number of rows")


def input_sets(model: nn.Module, family: str, names: Sequence[str]) -> list[tuple[str, ...]]:
    """The Linears of one block grouped by shared input (a LayerNorm's readers together, others alone)."""
    shared = {linear: g.linears for g in norm_groups(model, family) for linear in g.linears}
    sets, seen = [], set()
    for name in names:
        if name in seen:
            continue
        members = tuple(n for n in shared.get(name, (name,)) if n in names) or (name,)
        seen.update(members)
        sets.append(members)
    return sets


@register_ptq
class AWQ(PTQMethod):
    name = "awq"
    config_cls = AWQConfig
    quantizes = "W"
    granularity = "W per group of 128 input columns, asymmetric, per-input-channel scale; A: min-max when a_bits < 16"
    default_calib_size = 128
    paper = "AWQ (Lin et al., MLSys 2024), mit-han-lab/llm-awq"
    description = "activation-aware per-channel weight scaling (grid of 20) and per-group clip search"

    def _quantize(self, model: nn.Module, cfg: AWQConfig, calib: Calibration) -> None:
        family, batches, w_bits = calib.family, calib.batches, cfg.w_bits
        prepare(model, cfg.quant_scheme(), family)
        gen = torch.Generator().manual_seed(cfg.seed)
        for names in blocks_in_order(model, family):
            inputs = collect(model, names, batches)  # FP inputs (every point is still off)
            for members in input_sets(model, family, names):
                modules = [model.get_submodule(n) for n in members]
                x = sample_rows(inputs[members[0]].float(), cfg.n_rows, gen)
                group = fit_group_size(cfg.group_size, modules[0].in_features) or modules[0].in_features
                w = torch.cat([m.weight.detach().float() for m in modules])
                s, _ = awq_search_scale(w, x, w_bits, group, cfg.n_grid)
                x_clip = sample_rows(x, cfg.n_clip_rows, gen) / s
                for module in modules:
                    ws = module.weight.detach().float() * s
                    clip = awq_search_clip(ws, x_clip, w_bits, group, cfg.n_grid, cfg.max_shrink) if cfg.clip else None
                    scale, zp = group_qparams(ws.reshape(module.out_features, -1, group), w_bits, clip)
                    wq = GroupWeightQuantizer(w_bits, group, symmetric=False)
                    wq.in_scale = s.to(module.weight.device)
                    wq.set_qparams(scale, zp)
                    module.weight_quantizer = wq
        calibrate(model, batches, device=calib.device)  # the edges and (when quantized) the activations
