"""Outlier Suppression+: channel-wise shifting and scaling of LayerNorm outputs, migrated into the weights.

Wei et al., "Outlier Suppression+: Accurate quantization of large language models by equivalent
and optimal shifting and scaling" (EMNLP 2023); official code ModelTC/Outlier_Suppression_Plus
(`quantization/migration.py`, `model/quant_opt.py`).

For each LayerNorm and the Linears reading it, over the calibration rows (padding dropped):
shift z_j = (max_j + min_j) / 2 centres every channel; then a threshold t is searched on the
grid from the shifted tensor's largest |x| down to `min_threshold` in max(`n_grid`,
amax / `max_step`) steps, each candidate giving s_j = max(1, max|x_j - z_j| / t). A candidate is
scored by the output error (squared, summed over channels, mean over tokens) of the Linears, with
the input (x - z) / s fake-quantized per tensor on [-t, t] and the weights W diag(s) per output
channel: the attention context (softmax(q k^T) v, before the output projection) for q/k/v, the
Linear's own output otherwise. The pair folds into the LayerNorm, (gamma, beta) -> (gamma / s,
(beta - z) / s), and into the Linears, W -> W diag(s), b -> b + W z, so the FP function is
unchanged. On post-LN BERT, whose LayerNorm output is also the residual stream, (x - z) / s is
applied at the Linears' input quantization point instead. Then weights per output channel
symmetric and activations per tensor static min-max, at the config's bits. Needs quantized
activations. Details: docs/ptq.md#os_plus.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call

from arnq.ptq.base import Calibration, PTQConfig, PTQMethod, register_ptq
from arnq.ptq.common import (
    AttentionCall,
    Batch,
    NormGroup,
    ScaledInput,
    capture_calls,
    collect,
    fold_rows,
    norm_groups,
    record_input_map,
    rows,
)
from arnq.quant import calibrate, prepare
from arnq.quant.fake_quant import calc_qparams, fake_quantize, quant_range


@dataclass(frozen=True)
class OSPlusConfig(PTQConfig):
    shift: bool = True  # channel-wise shift z (False: scaling only, the paper's ablation)
    scale: bool = True  # searched channel-wise scale s (False: shifting only)
    n_grid: int = 100  # least number of threshold steps (official: max(100, amax / 0.5))
    max_step: float | None = 0.5  # largest threshold step; None: exactly n_grid steps
    min_threshold: float = 1.0  # smallest threshold searched (official: 1.0)
    search_examples: int = 16  # calibration examples the search scores candidates on (official: one batch of 16)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (self.shift or self.scale):
            raise ValueError("os_plus with shift=False and scale=False changes nothing: enable one of them "
                             "(or use minmax)")
        if isinstance(self.n_grid, bool) or not isinstance(self.n_grid, int) or self.n_grid < 1:
            raise ValueError(f"n_grid={self.n_grid!r}: use a positive number of threshold steps (official 100)")
        if self.max_step is not None and not (isinstance(self.max_step, (int, float)) and self.max_step > 0):
            raise ValueError(f"max_step={self.max_step!r}: use a positive step (official 0.5) or null")
        if not (isinstance(self.min_threshold, (int, float)) and self.min_threshold > 0):
            raise ValueError(f"min_threshold={self.min_threshold!r}: use a positive threshold (official 1.0)")
        if (isinstance(self.search_examples, bool) or not isinstance(self.search_examples, int)
                or self.search_examples < 1):
            raise ValueError(f"search_examples={self.search_examples!r}: use a positive number of examples")
        if not self.quantizes_activations:
            raise ValueError("os_plus suppresses activation outliers and needs quantized activations "
                             f"(got {self.bits}); for weight-only PTQ use gptq, awq or adaround")


def threshold_grid(amin: float, amax: float, n_grid: int, max_step: float | None,
                   min_threshold: float) -> list[float]:
    """Candidate thresholds, from max(-amin, amax) down to `min_threshold` (empty when the range is smaller).

    amin/amax are the shifted activation's global min and max; the step count is
    max(n_grid, int(amax / max_step)), as the official `Migrator1DRangeSearch`.
    """
    amin, amax = min(amin, 0.0), max(amax, 0.0)
    bound = max(-amin, amax)
    if bound < min_threshold:
        return []
    steps = n_grid if max_step is None else max(n_grid, int(amax / max_step))
    step = (bound - min_threshold) / steps
    return [bound - i * step for i in range(steps + 1)]


def migration_scale(cmin: torch.Tensor, cmax: torch.Tensor, threshold: float) -> torch.Tensor:
    """s_j = max(1, max_j / t, -min_j / t): the smallest scale bringing channel j into [-t, t]."""
    return torch.maximum(cmax, -cmin).div(threshold).clamp_min(1.0)


def search_threshold(loss: Callable[[float], float], grid: Sequence[float]) -> tuple[float | None, list[float]]:
    """The grid threshold with the least loss (the first on a tie) and every candidate's loss."""
    best, best_loss, losses = None, math.inf, []
    for t in grid:
        value = loss(t)
        losses.append(value)
        if value < best_loss:
            best, best_loss = t, value
    return best, losses


def quantize_rows(w: torch.Tensor, bits: int, symmetric: bool) -> torch.Tensor:
    """Per-output-channel min-max fake quantization of a (O, I) weight."""
    scale, zp = calc_qparams(w.amin(dim=1), w.amax(dim=1), bits, symmetric)
    return fake_quantize(w, scale.unsqueeze(1), zp.unsqueeze(1), *quant_range(bits, symmetric))


def quantize_in_range(x: torch.Tensor, threshold: float, bits: int, symmetric: bool) -> torch.Tensor:
    """Per-tensor fake quantization of x on [-t, t] (the range a candidate t gives the shifted, scaled input)."""
    t = torch.tensor(threshold, dtype=torch.float32, device=x.device)
    scale, zp = calc_qparams(-t, t, bits, symmetric)
    return fake_quantize(x, scale.to(x.dtype), zp.to(x.dtype), *quant_range(bits, symmetric))


@dataclass(frozen=True)
class QuantBits:
    """Bits and symmetry of the weight and activation quantizers a candidate is scored with."""

    w_bits: int
    a_bits: int
    w_symmetric: bool = True
    a_symmetric: bool = False


class MigrationObjective:
    """Output error of the Linears reading one LayerNorm under a candidate (scale s, threshold t).

    The candidate feeds Q_[-t, t]((x - z) / s) to Linears holding Q(W diag(s)) and b + W z; the
    error is squared, summed over output channels and averaged over tokens (the official
    `loss_fx`). `weights`/`biases` are keyed by the Linears' names relative to the module a
    subclass runs; subclasses hold the calibration inputs and the FP reference.
    """

    def __init__(self, weights: dict[str, torch.Tensor], biases: dict[str, torch.Tensor | None],
                 shift: torch.Tensor, bits: QuantBits) -> None:
        self.dtype = next(iter(weights.values())).dtype
        self.weights = {k: w.detach().float() for k, w in weights.items()}
        self.biases = {k: None if b is None else b.detach().float() for k, b in biases.items()}
        self.shift = shift.float()
        self.bits = bits

    def candidate_params(self, s: torch.Tensor) -> dict[str, torch.Tensor]:
        """Q(W diag(s)) and b + W z of every Linear, in float32."""
        params = {}
        for key, w in self.weights.items():
            params[f"{key}.weight"] = quantize_rows(w * s, self.bits.w_bits, self.bits.w_symmetric)
            bias = self.biases[key]
            params[f"{key}.bias"] = w @ self.shift + (0 if bias is None else bias)
        return params

    def quantized_input(self, x: torch.Tensor, s: torch.Tensor, threshold: float) -> torch.Tensor:
        """Q_[-t, t]((x - z) / s) per tensor."""
        return quantize_in_range((x - self.shift.to(x.dtype)) / s.to(x.dtype), threshold, self.bits.a_bits,
                                 self.bits.a_symmetric)

    def __call__(self, s: torch.Tensor, threshold: float) -> float:
        raise NotImplementedError


class LinearObjective(MigrationObjective):
    """The Linears' own outputs on the calibration rows x (N, C): the MLP fc1 and Swin's patch merging."""

    def __init__(self, x: torch.Tensor, weights: dict[str, torch.Tensor], biases: dict[str, torch.Tensor | None],
                 shift: torch.Tensor, bits: QuantBits) -> None:
        super().__init__(weights, biases, shift, bits)
        self.x = x.float()
        self.reference = {k: self.x @ w.T + (0 if self.biases[k] is None else self.biases[k])
                          for k, w in self.weights.items()}

    def __call__(self, s: torch.Tensor, threshold: float) -> float:
        x = self.quantized_input(self.x, s, threshold)
        params = self.candidate_params(s)
        err = sum((x @ params[f"{k}.weight"].T + params[f"{k}.bias"] - ref).pow(2).sum(dim=-1)
                  for k, ref in self.reference.items())
        return float(err.mean())


class AttentionObjective(MigrationObjective):
    """The attention context softmax(q k^T) v, the out-projection's input, over real tokens (q/k/v and the
    probabilities unquantized, as the official `qkv_function`); the module runs with the candidate's
    parameters through `functional_call` (the model is left untouched)."""

    def __init__(self, module: nn.Module, calls: Sequence[AttentionCall], out_proj: str | None,
                 weights: dict[str, torch.Tensor], biases: dict[str, torch.Tensor | None], shift: torch.Tensor,
                 bits: QuantBits) -> None:
        super().__init__(weights, biases, shift, bits)
        self.module, self.calls, self.out_proj = module, list(calls), out_proj
        self.reference = [self._context(call, call.args[0], None) for call in self.calls]

    def _context(self, call: AttentionCall, x: torch.Tensor, params: dict[str, torch.Tensor] | None) -> torch.Tensor:
        """(N, C) context rows of real tokens: the out-projection's input (timm) or the module's output (HF)."""
        seen: list[torch.Tensor] = []
        handle = None
        if self.out_proj is not None:
            handle = self.module.get_submodule(self.out_proj).register_forward_pre_hook(
                lambda _m, args: seen.append(args[0]))
        try:
            out = functional_call(self.module, params or {}, (x, *call.args[1:]), call.kwargs)
        finally:
            if handle is not None:
                handle.remove()
        context = seen[0] if self.out_proj is not None else out[0]
        return rows(context.float(), call.mask)

    def __call__(self, s: torch.Tensor, threshold: float) -> float:
        params = {k: v.to(self.dtype) for k, v in self.candidate_params(s).items()}
        total, count = 0.0, 0
        for call, reference in zip(self.calls, self.reference, strict=True):
            x = self.quantized_input(call.args[0], s, threshold)
            err = (self._context(call, x, params) - reference).pow(2).sum(dim=-1)
            total, count = total + float(err.sum()), count + err.numel()
        return total / max(count, 1)


def attention_site(model: nn.Module, family: str, group: NormGroup) -> tuple[str, str | None] | None:
    """(self-attention module, its out-projection relative name or None) when the group's Linears are
    q/k/v; None when they are an MLP or patch-merging Linear."""
    if family in ("vit", "swin") and len(group.linears) == 1 and group.linears[0].endswith(".qkv"):
        parent = group.linears[0].rpartition(".")[0]
        if isinstance(getattr(model.get_submodule(parent), "proj", None), nn.Linear):
            return parent, "proj"
    if family == "bert" and [n.rpartition(".")[2] for n in group.linears] == ["query", "key", "value"]:
        return group.linears[0].rpartition(".")[0], None
    return None


def search_batches(batches: Sequence[Batch], examples: int) -> list[Batch]:
    """Leading calibration batches holding at least `examples` examples (whole batches)."""
    chosen, seen = [], 0
    for batch in batches:
        chosen.append(batch)
        seen += len(batch[1])
        if seen >= examples:
            break
    return chosen


@torch.no_grad()
def channel_range(model: nn.Module, names: Sequence[str], batches: Sequence[Batch]
                  ) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Per-channel (min, max) of each named module's input over the calibration rows (padding dropped)."""
    def running(acc: tuple[torch.Tensor, torch.Tensor] | None, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        lo, hi = x.float().amin(dim=0), x.float().amax(dim=0)
        return (lo, hi) if acc is None else (torch.minimum(acc[0], lo), torch.maximum(acc[1], hi))

    return fold_rows(model, names, batches, running)


def channel_shift(lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    """z_j = (max_j + min_j) / 2: the shift that centres channel j on zero."""
    return (hi + lo) / 2


@dataclass(frozen=True)
class Migration:
    """One group's map x -> (x - shift) / scale (shift None: scaling only), the threshold picked (None: no
    search or an empty grid) and every candidate's loss."""

    scale: torch.Tensor
    shift: torch.Tensor | None
    threshold: float | None = None
    losses: tuple[float, ...] = ()


@torch.no_grad()
def find_migration(lo: torch.Tensor, hi: torch.Tensor, shift: torch.Tensor | None,
                   objective: MigrationObjective | None, cfg: OSPlusConfig) -> Migration:
    """The threshold (hence scale) with the least objective on the grid, for channel ranges [lo, hi] after `shift`."""
    cmin, cmax = (lo, hi) if shift is None else (lo - shift, hi - shift)
    ones = torch.ones_like(hi)
    if objective is None:
        return Migration(ones, shift)
    grid = threshold_grid(float(cmin.min()), float(cmax.max()), cfg.n_grid, cfg.max_step, cfg.min_threshold)
    best, losses = search_threshold(lambda t: objective(migration_scale(cmin, cmax, t), t), grid)
    scale = ones if best is None else migration_scale(cmin, cmax, best)
    return Migration(scale, shift, best, tuple(losses))


@torch.no_grad()
def apply_migration(model: nn.Module, group: NormGroup, m: Migration) -> None:
    """Fold (z, s) into the Linears (W diag(s), b + W z) and, where the group is foldable, into its LayerNorm.

    Records each Linear's input map (s, z / s) for PTQ-aware ARNQ's shadow (`record_input_map`).
    """
    mapped_shift = None if m.shift is None else m.shift / m.scale
    for name in group.linears:
        linear = model.get_submodule(name)
        w = linear.weight
        if m.shift is not None:
            if linear.bias is None:
                linear.bias = nn.Parameter(torch.zeros(w.shape[0], dtype=w.dtype, device=w.device))
            linear.bias.add_(w @ m.shift.to(w.dtype))
        w.mul_(m.scale.to(w.dtype))
        record_input_map(model, name, m.scale, mapped_shift)
    if group.foldable:
        norm = model.get_submodule(group.norm)
        if m.shift is not None:
            norm.bias.sub_(m.shift.to(norm.bias.dtype))
        norm.bias.div_(m.scale.to(norm.bias.dtype))
        norm.weight.div_(m.scale.to(norm.weight.dtype))


def group_objective(model: nn.Module, group: NormGroup, site: tuple[str, str | None] | None,
                    calls: dict[str, list[AttentionCall]], inputs: dict[str, torch.Tensor],
                    shift: torch.Tensor | None, bits: QuantBits) -> MigrationObjective:
    """The search objective of one group: the attention context for q/k/v, the Linear output otherwise."""
    prefix = site[0] if site is not None else group.linears[0].rpartition(".")[0]
    local = {name[len(prefix) + 1:]: model.get_submodule(name) for name in group.linears}
    weights = {k: m.weight for k, m in local.items()}
    biases = {k: m.bias for k, m in local.items()}
    if shift is None:
        w = next(iter(weights.values()))
        shift = torch.zeros(w.shape[1], device=w.device)
    if site is not None:
        module_name, out_proj = site
        return AttentionObjective(model.get_submodule(module_name), calls[module_name], out_proj, weights, biases,
                                  shift, bits)
    return LinearObjective(inputs[group.linears[0]], weights, biases, shift, bits)


@register_ptq
class OSPlus(PTQMethod):
    name = "os_plus"
    config_cls = OSPlusConfig
    quantizes = "W+A"
    granularity = "W per-channel sym; A per-tensor static after per-channel shift and searched scale"
    default_calib_size = 128
    paper = "Outlier Suppression+ (Wei et al., EMNLP 2023), ModelTC/Outlier_Suppression_Plus"
    description = "channel shift (max+min)/2 and output-MSE-searched scale, folded into LayerNorm (explicit on BERT)"
    smoke_params = {"n_grid": 10, "max_step": None, "search_examples": 8}
    shadow_params = {"n_grid": 20, "max_step": None}

    @torch.no_grad()
    def _quantize(self, model: nn.Module, cfg: OSPlusConfig, calib: Calibration) -> None:
        family, batches = calib.family, calib.batches
        scheme = cfg.quant_scheme()
        bits = QuantBits(cfg.w_bits, cfg.a_bits, scheme.w_symmetric, scheme.a_symmetric)
        groups = norm_groups(model, family)
        ranges = channel_range(model, [g.linears[0] for g in groups], batches)
        search = search_batches(batches, cfg.search_examples)
        sites = {g: attention_site(model, family, g) for g in groups}
        attention = [site[0] for site in sites.values() if site is not None] if cfg.scale else []
        calls = capture_calls(model, attention, search) if attention else {}
        plain = [g.linears[0] for g, site in sites.items() if site is None] if cfg.scale else []
        inputs = collect(model, plain, search) if plain else {}
        explicit: dict[str, Migration] = {}
        for g in groups:  # each group is searched before its own Linears change (their original W, b, x)
            lo, hi = ranges[g.linears[0]]
            shift = channel_shift(lo, hi) if cfg.shift else None
            objective = group_objective(model, g, sites[g], calls, inputs, shift, bits) if cfg.scale else None
            migration = find_migration(lo, hi, shift, objective, cfg)
            apply_migration(model, g, migration)
            if not g.foldable:
                explicit.update(dict.fromkeys(g.linears, migration))
        prepare(model, scheme, family)
        for name, m in explicit.items():
            module = model.get_submodule(name)
            device = module.weight.device
            shift = None if m.shift is None else (m.shift / m.scale).to(device)
            module.input_quantizer = ScaledInput(module.input_quantizer, m.scale.to(device), shift)
        calibrate(model, batches, device=calib.device)
