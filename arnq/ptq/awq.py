"""AWQ: activation-aware weight quantization (weight-only, per-group, with clip search).

Lin et al., "AWQ: Activation-aware Weight Quantization for LLM Compression and
Acceleration" (MLSys 2024); official code mit-han-lab/llm-awq.

For each set of Linears that read the same input: a per-input-channel scale
s = s_X^ratio / sqrt(max(s) min(s)), s_X = mean |x|, with the ratio on a grid of `n_grid` whose
candidate Q(W diag(s)) diag(s)^-1 gives the least output MSE of the module the official code
inspects (`module2inspect`: the attention for q/k/v, the MLP for fc1, the Linear itself for the
out-projection and fc2; `loss="linear"` scores every set on its Linears' own outputs); then per
(output row, group) the clip max|w| (1 - i / n_grid), i < max_shrink * n_grid, with the least
error of the group's partial outputs. Groups of `group_size` input columns with asymmetric zero
points (per row where `group_size` does not divide the layer's inputs). The scale stays inside the
weight quantizer (it quantizes W diag(s) and divides s back out), the same function as folding 1/s
into the previous op for weight-only deployment. Deviations from the paper's code: docs/ptq.md#awq.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call

from arnq.batch import token_mask
from arnq.ptq.base import Calibration, PTQConfig, PTQMethod, register_ptq
from arnq.ptq.common import AttentionCall, Batch, capture_calls, collect, norm_groups, rows, sample_rows
from arnq.ptq.gptq import GroupWeightQuantizer, blocks_in_order, fit_group_size
from arnq.quant import calibrate, prepare
from arnq.quant.fake_quant import calc_qparams, fake_quantize, quant_range

#: what a candidate scale is scored on: the inspected module's output (official) or the Linears' own outputs
LOSSES = ("block", "linear")


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


def scale_candidates(x: torch.Tensor, n_grid: int) -> list[tuple[float, torch.Tensor]]:
    """AWQ's grid over (N, I) inputs x: (ratio, s) for ratio = i / n_grid, i < n_grid, with
    s = s_X^ratio / sqrt(max(s) min(s)) and s_X = mean |x| per input channel."""
    x_mean = x.abs().mean(dim=0).clamp_min(1e-8)
    candidates = []
    for i in range(n_grid):
        ratio = i / n_grid
        s = x_mean.pow(ratio)
        candidates.append((ratio, s / (s.max() * s.min()).sqrt()))
    return candidates


@dataclass(frozen=True)
class ScaleSearch:
    """The chosen per-input-channel scale (I,), its ratio, and the loss of every grid ratio in grid order."""

    scale: torch.Tensor
    ratio: float
    losses: tuple[float, ...]


@torch.no_grad()
def search_scale(x: torch.Tensor, n_grid: int, loss: Callable[[torch.Tensor], float]) -> ScaleSearch:
    """The grid candidate (`scale_candidates` of x) with the least `loss(s)`, the first on ties."""
    candidates = scale_candidates(x, n_grid)
    losses = tuple(loss(s) for _, s in candidates)
    best, best_loss = 0, float("inf")
    for i, value in enumerate(losses):
        if value < best_loss:
            best, best_loss = i, value
    ratio, s = candidates[best]
    return ScaleSearch(s, ratio, losses)


def linear_loss(w: torch.Tensor, x: torch.Tensor, bits: int, group_size: int) -> Callable[[torch.Tensor], float]:
    """s -> mean (x W^T - x (Q(W diag s) diag s^-1)^T)^2: a scale's error on the Linears' own outputs."""
    reference = x @ w.T

    def loss(s: torch.Tensor) -> float:
        w_hat = pseudo_quantize(w * s, bits, group_size) / s
        return float(((x @ w_hat.T - reference) ** 2).mean())

    return loss


@torch.no_grad()
def awq_search_scale(w: torch.Tensor, x: torch.Tensor, bits: int, group_size: int, n_grid: int = 20
                     ) -> tuple[torch.Tensor, float]:
    """Per-input-channel scale s (I,) minimising ||x W^T - x (Q(W diag s) diag s^-1)^T||^2; returns (s, ratio)."""
    found = search_scale(x, n_grid, linear_loss(w, x, bits, group_size))
    return found.scale, found.ratio


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
    loss: str = "block"  # block: the inspected module's output (official); linear: the Linears' own outputs
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
        if self.loss not in LOSSES:
            raise ValueError(f"loss={self.loss!r}: choose one of {', '.join(LOSSES)} (block: the output of the "
                             "attention / MLP the official code inspects; linear: the Linears' own outputs)")


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


class FeedForward(nn.Module):
    """A BERT layer's MLP as one module: intermediate (dense, GELU), then output (dense, residual, LayerNorm),
    the layer's own `feed_forward_chunk`."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, attention_output: torch.Tensor) -> torch.Tensor:
        return self.layer.feed_forward_chunk(attention_output)


@dataclass(frozen=True)
class Inspected:
    """The module whose output scores a Linear set's scale (the official `module2inspect`): `module` runs on
    the calls captured at the input of the model's module `capture` (the same tensor the Linears read), and
    `weights` names the set's Linear weights inside `module`."""

    module: nn.Module
    capture: str
    weights: tuple[str, ...]


def inspected_module(model: nn.Module, family: str, members: Sequence[str]) -> Inspected | None:
    """The module AWQ's code inspects for the Linears `members`, or None where it scores the Linear's own
    output (the out-projection, fc2, Swin's patch-merging reduction).

    ViT/DeiT/Swin: q/k/v (one fused Linear) -> the attention module, as the code's self_attn for
    OPT/LLaMA and attn for MPT; fc1 -> the MLP (fc1, GELU, fc2), as its MLP modules for MPT,
    GPT-NeoX and BigCode. BERT: query/key/value -> `attention` (self-attention, output dense,
    residual, LayerNorm), intermediate.dense -> intermediate and output (`FeedForward`): post-LN puts
    the residual and the LayerNorm inside both, as BLOOM's inspected block.
    """
    parent, _, leaf = members[0].rpartition(".")
    if family in ("vit", "swin") and len(members) == 1 and leaf in ("qkv", "fc1"):
        return Inspected(model.get_submodule(parent), parent, (f"{leaf}.weight",))
    if family == "bert" and [n.rpartition(".")[2] for n in members] == ["query", "key", "value"]:
        attention = parent.rpartition(".")[0]  # <layer>.attention.self -> <layer>.attention
        return Inspected(model.get_submodule(attention), attention,
                         tuple(f"self.{n.rpartition('.')[2]}.weight" for n in members))
    if family == "bert" and len(members) == 1 and members[0].endswith(".intermediate.dense"):
        layer = members[0].removesuffix(".intermediate.dense")
        return Inspected(FeedForward(model.get_submodule(layer)), f"{layer}.intermediate",
                         ("layer.intermediate.dense.weight",))
    return None


def leading_examples(batches: Sequence[Batch], rows_total: int, n_rows: int) -> list[Batch]:
    """The leading calibration examples holding at most `n_rows` token rows (at least one example), as batches.

    An example's rows are its real tokens (padding left out), or for images an equal share of `rows_total`,
    the rows all the calibration images give the inspected module.
    """
    n_examples = sum(len(labels) for _, labels in batches)
    share = rows_total / max(n_examples, 1)
    chosen: list[Batch] = []
    used, taken = 0.0, 0
    for inputs, labels in batches:
        mask = token_mask(inputs)
        counts = mask.sum(dim=1).tolist() if mask is not None else [share] * len(labels)
        take = 0
        while take < len(counts) and (taken == 0 or used + counts[take] <= n_rows):
            used, take, taken = used + counts[take], take + 1, taken + 1
        if take:
            chosen.append((_head(inputs, take), labels[:take]))
        if take < len(counts):
            break
    return chosen


def _head(inputs: torch.Tensor | Mapping[str, torch.Tensor], k: int) -> torch.Tensor | dict[str, torch.Tensor]:
    """The first k examples of a batch's inputs (an image tensor or a dict of token tensors)."""
    if isinstance(inputs, Mapping):
        return {key: value[:k] for key, value in inputs.items()}
    return inputs[:k]


class BlockLoss:
    """s -> the MSE, over real tokens of the captured calls, between the inspected module's output with the
    set's Linears at Q(W diag s) diag s^-1 (everything else FP) and its FP output, as the official
    `_search_module_scale`; the module runs through `functional_call`, so the model is left untouched."""

    def __init__(self, inspected: Inspected, calls: Sequence[AttentionCall], bits: int, group_size: int) -> None:
        self.module, self.bits, self.group_size = inspected.module, bits, group_size
        self.weights = {name: self.module.get_parameter(name).detach() for name in inspected.weights}
        self.calls = list(calls)
        self.reference = [self.output(call, {}) for call in self.calls]

    @torch.no_grad()
    def output(self, call: AttentionCall, params: dict[str, torch.Tensor]) -> torch.Tensor:
        """The inspected module's (N, C) output rows of real tokens on one captured call."""
        out = functional_call(self.module, params, call.args, call.kwargs)
        return rows((out[0] if isinstance(out, tuple) else out).float(), call.mask)

    @torch.no_grad()
    def __call__(self, s: torch.Tensor) -> float:
        params = {name: (pseudo_quantize(w.float() * s, self.bits, self.group_size) / s).to(w.dtype)
                  for name, w in self.weights.items()}
        total, count = 0.0, 0
        for call, reference in zip(self.calls, self.reference, strict=True):
            err = (self.output(call, params) - reference).pow(2)
            total, count = total + float(err.sum()), count + err.numel()
        return total / max(count, 1)


@register_ptq
class AWQ(PTQMethod):
    name = "awq"
    config_cls = AWQConfig
    quantizes = "W"
    granularity = "W per group of 128 input columns, asymmetric, per-input-channel scale; A: min-max when a_bits < 16"
    default_calib_size = 128
    paper = "AWQ (Lin et al., MLSys 2024), mit-han-lab/llm-awq"
    description = ("activation-aware per-channel weight scaling (grid of 20, scored on the attention / MLP output) "
                   "and per-group clip search")

    def _quantize(self, model: nn.Module, cfg: AWQConfig, calib: Calibration) -> None:
        family, batches, w_bits = calib.family, calib.batches, cfg.w_bits
        prepare(model, cfg.quant_scheme(), family)
        gen = torch.Generator().manual_seed(cfg.seed)
        for names in blocks_in_order(model, family):
            inputs = collect(model, names, batches)  # FP inputs (every point is still off)
            sets = input_sets(model, family, names)
            inspected = {m: inspected_module(model, family, m) for m in sets} if cfg.loss == "block" else {}
            scored = [m for m in sets if inspected.get(m) is not None]
            calls: dict[str, list[AttentionCall]] = {}
            if scored:
                search = leading_examples(batches, inputs[scored[0][0]].shape[0], cfg.n_rows)
                calls = capture_calls(model, [inspected[m].capture for m in scored], search)
            for members in sets:
                modules = [model.get_submodule(n) for n in members]
                x = sample_rows(inputs[members[0]].float(), cfg.n_rows, gen)
                group = fit_group_size(cfg.group_size, modules[0].in_features) or modules[0].in_features
                w = torch.cat([m.weight.detach().float() for m in modules])
                block = inspected.get(members)
                loss = (linear_loss(w, x, w_bits, group) if block is None
                        else BlockLoss(block, calls[block.capture], w_bits, group))
                s = search_scale(x, cfg.n_grid, loss).scale
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
