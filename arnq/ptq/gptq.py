"""GPTQ: weight-only PTQ by column-wise quantization with Hessian error feedback.

Frantar et al., "GPTQ: Accurate Post-Training Quantization for Generative Pre-trained
Transformers" (ICLR 2023); official code IST-DASLab/gptq.

Per Linear of the transformer blocks: H = 2/N sum x x^T over the calibration rows (padding
tokens dropped), damped by `percdamp` * mean(diag H); the upper Cholesky factor of H^-1 drives
column-by-column rounding with the error fed back to the not-yet-quantized columns, in lazy
blocks of `blocksize` columns. Blocks are processed in order, each on the inputs of the model
whose earlier blocks are already quantized. Grid per output row, or per (row, group of
`group_size` input columns), chosen by `grid`: "asym" (the official default: min-max over the
row with 0 included, 2^b levels, integer zero point), "sym" (the official --sym: 2^b levels,
zero point 2^(b-1)) or "sym_narrow" (max|w| / (2^(b-1)-1), codes -(2^(b-1)-1)..2^(b-1)-1, no
zero point: the grid of symmetric integer kernels). `act_order` quantizes columns by decreasing
diag H (groups then fixed up front, so a group stays a contiguous run of columns).

The GPTQ weights are written in place and the weight quantizer holds GPTQ's scales and zero
points, so fake quantization maps them to themselves. With a_bits < 16 the activations get
min-max static calibration on top. Details: docs/ptq.md#gptq.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from arnq.ptq.base import Calibration, PTQConfig, PTQMethod, register_ptq
from arnq.ptq.common import Batch, block_linears, fold_rows
from arnq.quant import calibrate, prepare
from arnq.quant.fake_quant import fake_quantize, quant_range
from arnq.quant.modules import QuantLinear
from arnq.quant.quantizer import FakeQuantizer, QuantSpec

BLOCK_RE = re.compile(r"^(.*?(?:blocks|layer)\.\d+)\.")


class GroupWeightQuantizer(FakeQuantizer):
    """Weight quantizer with one scale (and zero point) per (output row, group of input columns).

    An optional per-input-channel `in_scale` s quantizes W diag(s) and divides s back out:
    AWQ's scaling, exactly what folding 1/s into the previous op gives for weight-only deployment.
    """

    def __init__(self, bits: int, group_size: int, symmetric: bool = True) -> None:
        super().__init__(QuantSpec(bits, symmetric, "channel", 0), "weight")
        self.group_size = group_size
        self.register_buffer("in_scale", None, persistent=False)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", group_size={self.group_size}"

    def start_observing(self) -> None:  # scales come from the method, not an observer
        self.observing = False

    def finish_observing(self) -> None:
        self.observing = False

    def observe(self, x: torch.Tensor) -> None:
        pass

    def quantize(self, x: torch.Tensor) -> torch.Tensor:
        if self.scale is None:
            raise RuntimeError("group weight quantizer has no scales: set them with set_qparams")
        out_f, in_f = x.shape
        w = x if self.in_scale is None else x * self.in_scale.to(x.dtype)
        grouped = w.reshape(out_f, in_f // self.group_size, self.group_size)  # (O, G, gs)
        q = fake_quantize(grouped, self.scale.unsqueeze(-1).to(x.dtype), self.zero_point.unsqueeze(-1).to(x.dtype),
                          self.qmin, self.qmax).reshape(out_f, in_f)
        return q if self.in_scale is None else q / self.in_scale.to(x.dtype)


GRIDS = ("asym", "sym", "sym_narrow")


def check_grid(grid: str) -> None:
    """Raise a ValueError naming the choices unless `grid` is one of GRIDS."""
    if grid not in GRIDS:
        raise ValueError(f"grid={grid!r}: choose asym (the official default), sym (the official --sym) "
                         "or sym_narrow (max|w| / (2^(b-1)-1), the symmetric integer grid)")


def symmetric_scale(w: torch.Tensor, bits: int) -> torch.Tensor:
    """Per-row symmetric scale of a (rows, cols) block: max|w| / qmax."""
    _, qmax = quant_range(bits, True)
    return (w.abs().amax(dim=1) / qmax).clamp_min(1e-8)


def _round(w: torch.Tensor, scale: torch.Tensor, bits: int) -> torch.Tensor:
    qmin, qmax = quant_range(bits, True)
    return torch.clamp(torch.round(w / scale), qmin, qmax) * scale


def grid_qparams(w: torch.Tensor, bits: int, grid: str = "asym") -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row (scale, zero point) of a (rows, cols) block on `grid`, as the official `Quantizer.find_params`.

    asym: the range [min(w, 0), max(w, 0)] over 2^b - 1 steps, zero point round(-min / scale) (in [0, 2^b-1]).
    sym: max|w| on both sides, zero point 2^(b-1); as the official code, a row without a negative weight keeps
    the lower end at 0 (scale max(w) / (2^b-1)). An all-zero row gets the range [-1, 1] (asym and sym, as
    the code).
    sym_narrow: `symmetric_scale` and zero points 0.
    """
    check_grid(grid)
    if grid == "sym_narrow":
        scale = symmetric_scale(w, bits)
        return scale, torch.zeros_like(scale)
    maxq = 2**bits - 1
    xmin, xmax = w.amin(dim=1).clamp(max=0), w.amax(dim=1).clamp(min=0)
    if grid == "sym":
        xmax = torch.maximum(-xmin, xmax)
        xmin = torch.where(xmin < 0, -xmax, xmin)
    empty = (xmin == 0) & (xmax == 0)
    xmin, xmax = xmin.masked_fill(empty, -1.0), xmax.masked_fill(empty, 1.0)
    scale = (xmax - xmin) / maxq
    zero = torch.full_like(scale, 2 ** (bits - 1)) if grid == "sym" else torch.round(-xmin / scale)
    return scale, zero


def quantize_to_grid(w: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, bits: int,
                     grid: str = "asym") -> torch.Tensor:
    """Round `w` to the grid of (broadcastable) `scale` and `zero`: scale (clamp(round(w / scale) + zero) - zero),
    codes in [0, 2^b-1] (asym, sym) or [-(2^(b-1)-1), 2^(b-1)-1] (sym_narrow, zero ignored)."""
    if grid == "sym_narrow":
        return _round(w, scale, bits)
    q = torch.clamp(torch.round(w / scale) + zero, 0, 2**bits - 1)
    return scale * (q - zero)


@torch.no_grad()
def gptq_quantize(
    weight: torch.Tensor,
    hessian: torch.Tensor,
    bits: int,
    *,
    grid: str = "asym",
    group_size: int | None = None,
    blocksize: int = 128,
    percdamp: float = 0.01,
    act_order: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """GPTQ-quantized copy of `weight` (out, in) given H = 2XX^T/N (in, in) on `grid`; returns (weight, scales,
    zero points), what `install_weights` takes.

    scales, zero points: (out,) per row, or (out, in // group_size) per group.
    """
    check_grid(grid)
    W = weight.detach().clone().float()
    H = hessian.detach().clone().float()
    out_f, in_f = W.shape
    if group_size is not None and in_f % group_size:
        raise ValueError(f"group_size={group_size} does not divide in_features={in_f}")
    dead = torch.diag(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0
    n_groups = in_f // group_size if group_size else 1
    if group_size is None:
        scales, zeros = grid_qparams(W, bits, grid)
        col_scale, col_zero = (t.unsqueeze(1).expand(out_f, in_f) for t in (scales, zeros))
    elif act_order:  # static groups on the original weight, so groups stay contiguous column runs
        params = [grid_qparams(W[:, g * group_size:(g + 1) * group_size], bits, grid) for g in range(n_groups)]
        scales, zeros = (torch.stack(ts, dim=1) for ts in zip(*params, strict=True))
        col_scale, col_zero = (t.repeat_interleave(group_size, dim=1) for t in (scales, zeros))
    else:
        scales, zeros = torch.zeros(out_f, n_groups), torch.zeros(out_f, n_groups)
        col_scale, col_zero = torch.zeros(out_f, in_f), torch.zeros(out_f, in_f)
    perm = torch.argsort(torch.diag(H), descending=True) if act_order else torch.arange(in_f)
    W, H, col_scale, col_zero = W[:, perm], H[perm][:, perm], col_scale[:, perm], col_zero[:, perm]
    damp = percdamp * torch.mean(torch.diag(H))
    H += damp * torch.eye(in_f)
    Hinv = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(H)), upper=True)
    Q = torch.zeros_like(W)
    for start in range(0, in_f, blocksize):
        end = min(start + blocksize, in_f)
        W1, Hinv1 = W[:, start:end].clone(), Hinv[start:end, start:end]
        Q1, Err1 = torch.zeros_like(W1), torch.zeros_like(W1)
        for i in range(end - start):
            col = start + i
            if group_size is not None and not act_order and col % group_size == 0:
                g = col // group_size
                # as the code: the group's grid from W, whose in-block columns get the lazy update later
                scales[:, g], zeros[:, g] = grid_qparams(W[:, col:col + group_size], bits, grid)
                col_scale[:, col:col + group_size] = scales[:, g:g + 1]
                col_zero[:, col:col + group_size] = zeros[:, g:g + 1]
            w, d = W1[:, i], Hinv1[i, i]
            q = quantize_to_grid(w, col_scale[:, col], col_zero[:, col], bits, grid)
            Q1[:, i] = q
            err = (w - q) / d
            W1[:, i:] -= err.unsqueeze(1) * Hinv1[i, i:].unsqueeze(0)
            Err1[:, i] = err
        Q[:, start:end] = Q1
        W[:, end:] -= Err1 @ Hinv[start:end, end:]
    inverse = torch.argsort(perm)
    return Q[:, inverse].to(weight.dtype), scales, zeros


def gptq_quantize_weight(
    weight: torch.Tensor,
    hessian: torch.Tensor,
    bits: int,
    *,
    group_size: int | None = None,
    blocksize: int = 128,
    percdamp: float = 0.01,
    act_order: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """`gptq_quantize` on the sym_narrow grid, whose zero points are all 0: returns (weight, scales).

    scales: (out,) per row, or (out, in // group_size) per group.
    """
    q, scales, _ = gptq_quantize(weight, hessian, bits, grid="sym_narrow", group_size=group_size,
                                 blocksize=blocksize, percdamp=percdamp, act_order=act_order)
    return q, scales


@dataclass(frozen=True)
class GPTQConfig(PTQConfig):
    percdamp: float = 0.01
    blocksize: int = 128
    group_size: int | None = None  # None: one scale per output row
    act_order: bool = False
    grid: str = "asym"  # asym (official default), sym (official --sym) or sym_narrow (symmetric integer grid)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_grid(self.grid)
        if not 0 <= self.percdamp < 1:
            raise ValueError(f"percdamp={self.percdamp!r}: the damping fraction must be in [0, 1), e.g. 0.01")
        if not (isinstance(self.blocksize, int) and self.blocksize >= 1):
            raise ValueError(f"blocksize={self.blocksize!r}: use a positive integer, e.g. 128")
        if self.group_size is not None and not (isinstance(self.group_size, int) and self.group_size >= 1):
            raise ValueError(f"group_size={self.group_size!r}: use a positive integer (e.g. 128) or null for per-row")


def block_name(linear_name: str) -> str:
    """The transformer block a Linear belongs to ('blocks.3', 'layers.1.blocks.0', 'bert.encoder.layer.2')."""
    match = BLOCK_RE.match(linear_name)
    return match.group(1) if match else linear_name.rpartition(".")[0]


def blocks_in_order(model: nn.Module, family: str) -> list[list[str]]:
    """Block Linears grouped by transformer block, in module order."""
    groups: dict[str, list[str]] = {}
    for name, _ in block_linears(model, family):
        groups.setdefault(block_name(name), []).append(name)
    return list(groups.values())


def hessians(model: nn.Module, names: Sequence[str], batches: Sequence[Batch]) -> dict[str, torch.Tensor]:
    """H = 2/N sum x x^T of each named Linear's input rows over the calibration batches (padding dropped)."""
    def second_moment(acc: tuple[torch.Tensor, int] | None, x: torch.Tensor) -> tuple[torch.Tensor, int]:
        x = x.float()
        total, count = acc if acc is not None else (0, 0)
        return total + x.T @ x, count + x.shape[0]

    sums = fold_rows(model, names, batches, second_moment)
    return {name: 2 * total / max(count, 1) for name, (total, count) in sums.items()}


def fit_group_size(group_size: int | None, in_features: int) -> int | None:
    """The group size used for a layer: per-row when None or when it does not divide the layer's inputs."""
    if group_size is None or group_size >= in_features or in_features % group_size:
        return None
    return group_size


def install_weights(module: QuantLinear, weight: torch.Tensor, scales: torch.Tensor, bits: int,
                    group_size: int | None, zero_points: torch.Tensor | None = None) -> None:
    """Write quantized weights and a group weight quantizer holding the method's scales (one group per row when
    `group_size` is None); calibration leaves those scales alone.

    Without `zero_points` the grid is symmetric narrow (codes -(2^(b-1)-1)..2^(b-1)-1, zero point 0); with them,
    the codes are 0..2^b-1 around the given (integer) zero points, which covers `grid_qparams`' asym and sym.
    """
    module.weight.data.copy_(weight)
    module.weight_quantizer = GroupWeightQuantizer(bits, group_size or module.in_features,
                                                   symmetric=zero_points is None)
    scales = scales.reshape(module.out_features, -1)
    zeros = torch.zeros_like(scales) if zero_points is None else zero_points.reshape(module.out_features, -1)
    module.weight_quantizer.set_qparams(scales, zeros.to(scales.device))


@register_ptq
class GPTQ(PTQMethod):
    name = "gptq"
    config_cls = GPTQConfig
    quantizes = "W"
    granularity = ("W per output row (or per group of input columns), asymmetric min-max (grid: sym, sym_narrow); "
                   "A: min-max on top when a_bits < 16")
    default_calib_size = 128
    #: requantized, GPTQ's compensated, rounded weights freeze the training forward between its runs while the FP
    #: weights drift, as ERQ's do (results/COMPOSITION.md, section 24)
    shadow_weight_error = "frozen"
    paper = "GPTQ (Frantar et al., ICLR 2023), IST-DASLab/gptq"
    description = "column-wise rounding with inverse-Hessian error feedback (damp 0.01, blocks of 128)"

    def _quantize(self, model: nn.Module, cfg: GPTQConfig, calib: Calibration) -> None:
        w_bits, batches = cfg.w_bits, calib.batches
        prepare(model, cfg.quant_scheme(), calib.family)  # every point off until the end
        for names in blocks_in_order(model, calib.family):
            H = hessians(model, names, batches)
            for name in names:
                module = model.get_submodule(name)
                group = fit_group_size(cfg.group_size, module.in_features)
                weight, scales, zeros = gptq_quantize(module.weight, H[name].to(module.weight.device), w_bits,
                                                      grid=cfg.grid, group_size=group, blocksize=cfg.blocksize,
                                                      percdamp=cfg.percdamp, act_order=cfg.act_order)
                install_weights(module, weight, scales.to(module.weight.device), w_bits, group,
                                None if cfg.grid == "sym_narrow" else zeros)
                module.weight_quantizer.quantizing = True  # later blocks see this block's quantized weights
        calibrate(model, batches, device=calib.device)  # the edges and (when quantized) the activations


def rtn_weight(weight: torch.Tensor, bits: int, group_size: int | None = None, grid: str = "asym") -> torch.Tensor:
    """Round-to-nearest on GPTQ's grid (per row, or per group): the baseline GPTQ improves on (the official
    `--nearest`)."""
    out_f, in_f = weight.shape
    rows = weight if group_size is None else weight.reshape(out_f * (in_f // group_size), group_size)
    scale, zero = grid_qparams(rows, bits, grid)
    return quantize_to_grid(rows, scale.unsqueeze(1), zero.unsqueeze(1), bits, grid).reshape(out_f, in_f)


__all__ = ["GRIDS", "GPTQ", "GPTQConfig", "GroupWeightQuantizer", "gptq_quantize", "gptq_quantize_weight",
           "grid_qparams", "rtn_weight"]
