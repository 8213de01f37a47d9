"""PTQ4ViT: twin-uniform quantization with a Hessian-guided scale search.

Yuan et al., "PTQ4ViT: Post-Training Quantization for Vision Transformers with Twin Uniform
Quantization" (ECCV 2022); official code hahnyuan/PTQ4ViT.

Every Linear's weight and input steps, and the head-wise q/k/v steps of both attention matmuls,
are searched alternately (`rounds`) on the grid (alpha + i (beta - alpha) / n_grid) x the min-max
step, i = 0..n_grid, by the gradient-weighted output error (`metric`), each layer on FP inputs
from one capture pass over the calibration set. Softmax and GELU outputs get twin-uniform
quantizers (arnq/quant/twin_uniform.py). Weights and activations use the signed code
[-2^(b-1), 2^(b-1) - 1] * step; the patch embedding and head are quantized at the body bits
(`edge_bits="body"`, as the paper). Recipe, layout and deviations from the paper's code:
docs/ptq.md#ptq4vit.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from arnq.batch import forward_logits, token_mask
from arnq.ptq.base import Calibration, PTQConfig, PTQMethod, register_ptq
from arnq.ptq.common import Batch, rows
from arnq.quant.api import QuantConfig, edge_patterns, name_matches, prepare
from arnq.quant.modules import QuantConv2d, QuantLinear, QuantProbs
from arnq.quant.quantizer import _TOKEN_MASK, FakeQuantizer, QuantSpec, SectionQuantizer, token_mask_context
from arnq.quant.twin_uniform import (
    TwinGeluQuantizer,
    TwinSoftmaxQuantizer,
    scale_grid,
    softmax_small_scales,
    twin_gelu_quantize,
    twin_softmax_quantize,
)

CAPTURE_BATCH = 4  # examples per forward/backward of the capture pass (the official calibrator's batch_size=4)
_BUDGET = 1 << 24  # float elements per candidate batch in a search
_EPS = 1e-8
_GELU_NAMES = ("GELUActivation", "GELUTanh", "NewGELUActivation", "GELUPytorchTanh", "FastGELUActivation")


@dataclass(frozen=True)
class PTQ4ViTConfig(PTQConfig):
    """PTQ4ViT's search grid, metric, twin-uniform switches and the CPU subsampling of the search."""

    alpha: float = 0.01  # candidate steps (alpha + i (beta - alpha)/n_grid) * minmax step, i = 0..n_grid
    beta: float = 1.2
    n_grid: int = 100
    rounds: int = 3  # alternating search rounds (weight/input, q/k, split/v)
    metric: str = "hessian"  # "hessian" (gradient-weighted output error) or "l2" (output MSE)
    hessian_loss: str = "fisher"  # "fisher" (label drawn from the FP prediction) or "labels" (calibration labels)
    twin_softmax: bool = True
    twin_gelu: bool = True
    w_granularity: str = "tensor"  # "tensor": one step per Linear (qkv: per q/k/v third); "channel"
    edge_bits: int | str | None = "body"  # patch embedding and head: "body" (paper), 2..8, or None (FP)
    search_rows: int | None = 256  # rows scoring a Linear's candidates; None = all
    attn_instances: int | None = 8  # images / windows / sentences scoring an attention's candidates; None = all
    attn_query_rows: int | None = 32  # query rows per instance; None = all
    seed: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 < self.alpha < self.beta:
            raise ValueError(f"alpha={self.alpha!r}, beta={self.beta!r}: need 0 < alpha < beta (paper: 0.01, 1.2)")
        for name in ("n_grid", "rounds"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}={value!r}: use a positive integer (paper: n_grid=100, rounds=3)")
        choices = {
            "metric": ("hessian", "l2"),
            "hessian_loss": ("fisher", "labels"),
            "w_granularity": ("tensor", "channel"),
        }
        for name, valid in choices.items():
            if getattr(self, name) not in valid:
                raise ValueError(f"{name}={getattr(self, name)!r}: choose one of {', '.join(valid)}")
        edge = self.edge_bits
        if not (edge is None or edge == "body" or (isinstance(edge, int) and 2 <= edge <= 8)):
            raise ValueError(f"edge_bits={edge!r}: use 'body' (the paper), an integer 2..8, or None (edges in FP)")
        for name in ("search_rows", "attn_instances", "attn_query_rows"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"{name}={value!r}: use a positive integer, or None to score every row")

    def quant_scheme(self) -> QuantConfig:
        edge_bits = self.w_bits if self.edge_bits == "body" else self.edge_bits
        return QuantConfig(w_bits=self.w_bits, a_bits=self.a_bits, edge_bits=edge_bits, w_granularity="channel",
                           w_symmetric=False, a_symmetric=False)


# ---------------------------------------------------------------- quantization helpers


def _uniform(x: torch.Tensor, scale: torch.Tensor, bits: int) -> torch.Tensor:
    """The signed b-bit code clamp(round(x/Δ), -2^(b-1), 2^(b-1)-1)·Δ (no autograd).

    Bit-identical to FakeQuantizer's asymmetric code with zero point 2^(b-1) (integers add and subtract
    exactly), in fewer passes over the candidate-sized tensors.
    """
    half = 2 ** (bits - 1)
    return (x * (1.0 / scale)).round_().clamp_(-half, half - 1).mul_(scale)


def _minmax_step(absmax: torch.Tensor, bits: int) -> torch.Tensor:
    """The official initial step: the signed code just covers max|x|."""
    return absmax.float().clamp_min(_EPS) / (2 ** (bits - 1) - 0.5)


def _set_signed(quantizer: FakeQuantizer, scale: torch.Tensor) -> None:
    quantizer.set_qparams(scale, torch.full_like(scale, float(2 ** (quantizer.spec.bits - 1))))


def _as_head(scale: torch.Tensor) -> torch.Tensor:
    """(H,) or (1,) step -> broadcastable over (I, H, rows, cols)."""
    return scale.view(1, -1, 1, 1)


@dataclass(frozen=True)
class _Objective:
    """What a search minimises: sum((weight ⊙ (trial output − target))²).

    `weight` is √(row weight)·∂L/∂O for the Hessian-guided metric (√(row weight) for output MSE);
    `plain` is √(row weight), the MSE used where the gradient-weighted error is flat (no gradient).
    """

    target: torch.Tensor
    weight: torch.Tensor
    plain: torch.Tensor | None

    @classmethod
    def build(cls, target: torch.Tensor, grad: torch.Tensor | None, root_weight: torch.Tensor) -> _Objective:
        if grad is None:
            return cls(target, root_weight, None)
        return cls(target, grad * root_weight, root_weight)


def _errors(
    candidates: torch.Tensor,
    produce: Callable[[torch.Tensor], torch.Tensor],
    target: torch.Tensor,
    weight: torch.Tensor,
    reduce: Callable[[torch.Tensor], torch.Tensor],
    numel: int,
) -> torch.Tensor:
    """(K, G) weighted squared output errors of the candidates, evaluated a memory-bounded chunk at a time."""
    chunk = max(1, _BUDGET // max(numel, 1))
    return torch.cat([reduce(produce(part).sub_(target).mul_(weight).square_()) for part in candidates.split(chunk)])


def _best(
    candidates: torch.Tensor,
    produce: Callable[[torch.Tensor], torch.Tensor],
    objective: _Objective,
    reduce: Callable[[torch.Tensor], torch.Tensor],
    numel: int,
    fallback: int,
) -> torch.Tensor:
    """The candidate step of each group with the least objective; returns the G chosen steps.

    `candidates` is (K, ...) and broadcasts against the operand `produce` quantizes, `produce` gives
    the (k, ...) trial outputs of a chunk and `reduce` sums their squared errors to (k, G). Groups whose
    error is the same for every candidate fall back to output MSE, then to the candidate `fallback`.
    """
    err = _errors(candidates, produce, objective.target, objective.weight, reduce, numel)
    index = err.argmin(0)
    flat = err.amax(0) <= err.amin(0)
    if flat.any() and objective.plain is not None:
        plain = _errors(candidates, produce, objective.target, objective.plain, reduce, numel)
        index = torch.where(flat, plain.argmin(0), index)
        flat &= plain.amax(0) <= plain.amin(0)
    index[flat] = fallback
    return candidates.reshape(len(candidates), -1)[index, torch.arange(len(index), device=index.device)]


def _left(quant: Callable, x: torch.Tensor, other: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """Trial outputs quant(x, Δ) @ other for a batch of candidate steps Δ."""
    return lambda s: quant(x, s) @ other


def _right(quant: Callable, x: torch.Tensor, other: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """Trial outputs other @ quant(x, Δ) for a batch of candidate steps Δ."""
    return lambda s: other @ quant(x, s)


def _importance(score: torch.Tensor, count: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """`count` draws per row of `score` (..., n) with probability ∝ score, and their 1/(count·p) weights."""
    score = score.detach().double().cpu()
    total = score.sum(-1, keepdim=True)
    score = torch.where(total > 0, score, torch.ones_like(score))  # nothing reached these rows: uniform
    prob = score / score.sum(-1, keepdim=True)
    index = torch.multinomial(prob.reshape(-1, prob.shape[-1]), count, replacement=True, generator=gen)
    index = index.reshape(*prob.shape[:-1], count)
    weight = 1.0 / (count * prob.gather(-1, index))
    return index, weight.float()


def _pad_to(t: torch.Tensor, sizes: dict[int, int]) -> torch.Tensor:
    """Zero-pad dims of `t` at the end up to the given sizes."""
    pad: list[int] = []
    for dim in range(t.dim() - 1, -1, -1):
        pad += [0, sizes.get(dim, t.shape[dim]) - t.shape[dim]]
    return F.pad(t, pad) if any(pad) else t


# ---------------------------------------------------------------- search sites


@dataclass(eq=False)
class _LinearSite:
    """A Linear (or the patch-embedding conv) whose weight and input steps are searched together."""

    name: str
    module: QuantLinear | QuantConv2d
    groups: int  # weight-step groups along the output channels
    stash: dict[str, torch.Tensor] = field(default_factory=dict)
    chunks: list[tuple[torch.Tensor, ...]] = field(default_factory=list)
    absmax: torch.Tensor | None = None  # max |x| (uniform input) or max x (twin GELU input), all rows

    def input_rows(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        m = self.module
        if isinstance(m, QuantConv2d):
            if isinstance(m.padding, str) or m.groups != 1:
                raise ValueError(f"{self.name}: PTQ4ViT searches ungrouped convolutions with numeric padding only")
            cols = F.unfold(x, m.kernel_size, m.dilation, m.padding, m.stride)  # (B, C·kh·kw, L)
            return cols.transpose(1, 2).reshape(-1, cols.shape[1])
        return rows(x, mask)

    def output_rows(self, y: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        if isinstance(self.module, QuantConv2d):
            return y.permute(0, 2, 3, 1).reshape(-1, y.shape[1])  # (B·h·w, out)
        return rows(y, mask)

    def hook(self) -> list[torch.utils.hooks.RemovableHandle]:
        def forward_hook(_module: nn.Module, args: tuple[Any, ...], output: torch.Tensor) -> None:
            mask = _TOKEN_MASK.get()
            self.stash["x"] = self.input_rows(args[0].detach(), mask)
            self.stash["y"] = self.output_rows(output.detach(), mask)
            if output.requires_grad:
                output.register_hook(lambda g: self.stash.__setitem__("g", self.output_rows(g.detach(), mask)))

        return [self.module.register_forward_hook(forward_hook)]

    def finish_batch(self, count: int | None, gen: torch.Generator, hessian: bool) -> None:
        """Keep an importance-sampled subset of this micro-batch's rows; update the min-max statistic."""
        if "x" not in self.stash:  # this micro-batch did not reach the module
            return
        x, y = self.stash.pop("x"), self.stash.pop("y")
        g = self.stash.pop("g", torch.zeros_like(y)) if hessian else None
        if x.shape[0] == 0:
            return
        twin = isinstance(self.module.input_quantizer, TwinGeluQuantizer)
        stat = x.amax() if twin else x.abs().amax()
        self.absmax = stat if self.absmax is None else torch.maximum(self.absmax, stat)
        if count is None or x.shape[0] <= count:
            weight = torch.ones(x.shape[0], device=x.device)
        else:
            score = g.square().sum(1) if hessian else torch.ones(x.shape[0])
            index, weight = _importance(score, count, gen)
            index, weight = index.to(x.device), weight.to(x.device)
            x, y, g = x[index], y[index], (g[index] if hessian else None)
        self.chunks.append((x, y, g, weight))

    def search(self, grid: torch.Tensor, rounds: int) -> None:
        """Alternate the weight-step and input-step searches; set both quantizers."""
        if not self.chunks:
            raise RuntimeError(f"{self.name} saw no calibration rows; check that the batches reach it")
        x = torch.cat([c[0] for c in self.chunks]).float()
        y = torch.cat([c[1] for c in self.chunks]).float()
        g = None if self.chunks[0][2] is None else torch.cat([c[2] for c in self.chunks]).float()
        root_weight = torch.cat([c[3] for c in self.chunks]).sqrt()[:, None]  # (R, 1)
        self.chunks = []
        m = self.module
        w = m.weight.detach().float().reshape(m.weight.shape[0], -1)  # (O, I)
        if m.bias is not None:
            y = y - m.bias.detach().float()  # trial outputs leave the bias out
        objective = _Objective.build(y, g, root_weight)
        out_ch, in_ch, rows_n = w.shape[0], w.shape[1], x.shape[0]
        w_bits = m.weight_quantizer.spec.bits
        per_group = out_ch // self.groups
        w_init = _minmax_step(w.abs().reshape(self.groups, -1).amax(1), w_bits)  # (G,)
        w_candidates = grid[:, None] * w_init[None]  # (K, G)
        fallback = int((grid - 1).abs().argmin())

        def expand(step: torch.Tensor) -> torch.Tensor:  # (..., G) -> (..., O, 1)
            return step.repeat_interleave(per_group, dim=-1).unsqueeze(-1)

        def per_group_error(d: torch.Tensor) -> torch.Tensor:  # (k, R, O) -> (k, G)
            return d.sum(1).reshape(d.shape[0], self.groups, per_group).sum(-1)

        def weight_trial(xq: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
            def trial(s: torch.Tensor) -> torch.Tensor:  # one GEMM for the k candidate weights: (k, R, O)
                wq = _uniform(w, expand(s), w_bits).reshape(-1, in_ch)  # (k·O, I)
                return F.linear(xq, wq).view(rows_n, len(s), out_ch).transpose(0, 1)

            return trial

        aq = m.input_quantizer
        quant_in: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None
        if aq is not None:
            a_bits = aq.spec.bits
            if isinstance(aq, TwinGeluQuantizer):
                quant_in = lambda t, s: twin_gelu_quantize(t, s, a_bits)  # noqa: E731
            else:
                quant_in = lambda t, s: _uniform(t, s, a_bits)  # noqa: E731
            a_step = _minmax_step(self.absmax.reshape(1), a_bits)  # (1,)
            a_candidates = (grid * a_step)[:, None, None]  # (K, 1, 1)

        def input_trial(wq: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
            return lambda s: F.linear(quant_in(x, s), wq)  # (k, R, O)

        w_step = w_init
        for _ in range(rounds if quant_in is not None else 1):
            xq = x if quant_in is None else quant_in(x, a_step)
            w_step = _best(w_candidates, weight_trial(xq), objective, per_group_error,
                           2 * rows_n * out_ch + out_ch * in_ch, fallback)
            if quant_in is not None:
                wq = _uniform(w, expand(w_step), w_bits)
                a_step = _best(a_candidates, input_trial(wq), objective, lambda d: d.sum((1, 2))[:, None],
                               rows_n * (in_ch + out_ch), fallback)
        _set_signed(m.weight_quantizer, expand(w_step).squeeze(-1))
        if isinstance(aq, TwinGeluQuantizer):
            aq.set_qparams(a_step.reshape(()), torch.zeros((), device=a_step.device))
        elif aq is not None:
            _set_signed(aq, a_step.reshape(()))


@dataclass(eq=False)
class _AttentionSite:
    """The two matmuls of one attention: q@kᵀ and probs@v with head-wise q/k/v steps."""

    name: str
    heads: int
    head_dim: int
    quantizers: dict[str, FakeQuantizer]  # q, k, v (head-wise, last axis), probs
    projections: tuple[nn.Module, ...]  # the fused qkv Linear, or query/key/value
    probs_module: nn.Module  # called on the softmax output
    out_module: nn.Module  # reads probs@v (proj / attention.output.dense)
    stash: dict[str, torch.Tensor] = field(default_factory=dict)
    chunks: list[dict[str, torch.Tensor]] = field(default_factory=list)
    absmax: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def bits(self) -> int:
        return self.quantizers["q"].spec.bits

    def _heads(self, t: torch.Tensor) -> torch.Tensor:  # (B, N, H·d) -> (B, H, N, d)
        return t.reshape(t.shape[0], t.shape[1], self.heads, self.head_dim).transpose(1, 2)

    def hook(self) -> list[torch.utils.hooks.RemovableHandle]:
        def fused(_module: nn.Module, _args: tuple[Any, ...], out: torch.Tensor) -> None:
            for key, part in zip("qkv", out.detach().chunk(3, dim=-1), strict=True):
                self.stash[key] = self._heads(part)

        def single(key: str) -> Callable[..., None]:
            def hook(_module: nn.Module, _args: tuple[Any, ...], out: torch.Tensor) -> None:
                self.stash[key] = self._heads(out.detach())

            return hook

        def probs(_module: nn.Module, args: tuple[Any, ...], _out: torch.Tensor) -> None:
            p = args[0]
            self.stash["p"] = p.detach()
            mask = _TOKEN_MASK.get()
            if mask is not None and mask.shape == (p.shape[0], p.shape[-1]):
                self.stash["mask"] = mask
            if p.requires_grad:
                def score_grad(g: torch.Tensor) -> None:  # softmax backward: dL/dscores
                    pd = p.detach()
                    self.stash["gs"] = pd * (g - (pd * g).sum(-1, keepdim=True))

                p.register_hook(score_grad)

        def out_in(_module: nn.Module, args: tuple[Any, ...], _out: torch.Tensor) -> None:
            x = args[0]
            if x.requires_grad:
                x.register_hook(lambda g: self.stash.__setitem__("go", self._heads(g.detach())))

        if len(self.projections) == 1:
            handles = [self.projections[0].register_forward_hook(fused)]
        else:
            handles = [m.register_forward_hook(single(k)) for k, m in zip("qkv", self.projections, strict=True)]
        return handles + [
            self.probs_module.register_forward_hook(probs),
            self.out_module.register_forward_hook(out_in),
        ]

    def finish_batch(self, instances: int | None, count: int | None, gen: torch.Generator, hessian: bool) -> None:
        """Keep sampled instances and importance-sampled query rows; update the per-head min-max statistics."""
        s, self.stash = self.stash, {}
        if "p" not in s:  # this micro-batch did not reach the attention
            return
        q, k, v, p = s["q"], s["k"], s["v"], s["p"]
        n_inst, _, n_tok, _ = q.shape
        mask = s.get("mask")
        valid = torch.ones(n_inst, n_tok, device=q.device) if mask is None else mask.to(q.dtype)
        vm = valid[:, None, :, None]
        k, v = k * vm, v * vm  # padding keys carry no probability: zero rows add no error either
        stats = {"q": q * vm, "k": k, "v": v}
        if not isinstance(self.quantizers["probs"], TwinSoftmaxQuantizer):
            stats["probs"] = p * vm
        for key, t in stats.items():
            stat = t.abs().amax(dim=(0, 2, 3))  # (H,)
            self.absmax[key] = stat if key not in self.absmax else torch.maximum(self.absmax[key], stat)
        gs = s.get("gs", torch.zeros_like(p)) if hessian else None
        go = s.get("go", torch.zeros_like(q)) if hessian else None

        inst_weight = 1.0
        if instances is not None and n_inst > instances:
            pick = torch.randperm(n_inst, generator=gen)[:instances].to(q.device)
            inst_weight = n_inst / instances
            q, k, v, p, valid = q[pick], k[pick], v[pick], p[pick], valid[pick]
            gs, go = (gs[pick], go[pick]) if hessian else (None, None)
        if count is None or n_tok <= count:
            row_weight = valid
            index = torch.arange(n_tok, device=q.device).expand(len(q), -1)
        else:
            if hessian:
                energy = [t.square().sum(dim=(1, 3)) for t in (gs, go)]  # (I, N) each
                score = sum(e / e.sum(1, keepdim=True).clamp_min(1e-30) for e in energy)
            else:
                score = valid
            index, row_weight = _importance(score, count, gen)
            index, row_weight = index.to(q.device), row_weight.to(q.device)

        def take(t: torch.Tensor) -> torch.Tensor:  # query rows of (I, H, N, X)
            return t.gather(2, index[:, None, :, None].expand(-1, t.shape[1], -1, t.shape[-1]))

        chunk = {"q": take(q), "k": k, "v": v, "p": take(p), "w": row_weight * inst_weight}
        if hessian:
            chunk["gs"], chunk["go"] = take(gs), take(go)
        self.chunks.append(chunk)

    def _data(self) -> dict[str, torch.Tensor]:
        """The kept chunks stacked along instances, zero-padded to common row/key counts."""
        rows_n = max(c["q"].shape[2] for c in self.chunks)
        keys_n = max(c["k"].shape[2] for c in self.chunks)
        dims = {"q": {2: rows_n}, "k": {2: keys_n}, "v": {2: keys_n}, "p": {2: rows_n, 3: keys_n},
                "gs": {2: rows_n, 3: keys_n}, "go": {2: rows_n}, "w": {1: rows_n}}
        data = {key: torch.cat([_pad_to(c[key], dims[key]) for c in self.chunks]).float() for key in self.chunks[0]}
        self.chunks = []
        return data

    def search(self, grid: torch.Tensor, rounds: int) -> None:
        """Head-wise q/k steps on q@kᵀ, then the probs quantizer and head-wise v step on probs@v."""
        if not self.chunks:
            raise RuntimeError(f"{self.name} saw no calibration data; check that the batches reach it")
        d = self._data()
        q, k, v, p, gs, go = d["q"], d["k"], d["v"], d["p"], d.get("gs"), d.get("go")
        root_weight = d["w"].sqrt()[:, None, :, None]  # (I, 1, R, 1)
        bits = self.bits
        scores, outputs = q @ k.transpose(-1, -2), p @ v  # FP targets (I, H, R, N), (I, H, R, d)
        on_scores = _Objective.build(scores, gs, root_weight)
        on_outputs = _Objective.build(outputs, go, root_weight)
        fallback = int((grid - 1).abs().argmin())

        def head_candidates(key: str) -> torch.Tensor:  # (K, 1, H, 1, 1)
            return grid.view(-1, 1, 1, 1, 1) * _minmax_step(self.absmax[key], bits).view(1, 1, -1, 1, 1)

        def per_head(t: torch.Tensor) -> torch.Tensor:  # (k, I, H, R, M) -> (k, H)
            return t.sum(dim=(1, 3, 4))

        def uq(t: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
            return _uniform(t, s, bits)

        steps = {key: _minmax_step(self.absmax[key], bits) for key in "qkv"}
        if isinstance(self.quantizers["probs"], TwinSoftmaxQuantizer):
            def quant_p(t: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
                return twin_softmax_quantize(t, s, bits)

            p_candidates = softmax_small_scales(bits).to(grid.device).view(-1, 1, 1, 1, 1)
            steps["probs"] = torch.full((1,), 0.01 / (2 ** (bits - 1) - 1), device=grid.device)  # official init
            p_reduce, p_fallback = (lambda t: t.sum(dim=(1, 2, 3, 4))[:, None]), 0
        else:
            quant_p = uq
            p_candidates = head_candidates("probs")
            steps["probs"] = _minmax_step(self.absmax["probs"], bits)
            p_reduce, p_fallback = per_head, fallback

        size_qk, size_pv = scores[0].numel(), outputs[0].numel()
        k_t_fp = k.transpose(-1, -2)  # (I, H, d, N): per-head steps broadcast the same way
        for _ in range(rounds):
            k_t = uq(k_t_fp, _as_head(steps["k"]))
            steps["q"] = _best(head_candidates("q"), _left(uq, q, k_t), on_scores, per_head,
                               len(q) * (q[0].numel() + size_qk), fallback)
            qq = uq(q, _as_head(steps["q"]))
            steps["k"] = _best(head_candidates("k"), _right(uq, k_t_fp, qq), on_scores, per_head,
                               len(q) * (k[0].numel() + size_qk), fallback)
            vq = uq(v, _as_head(steps["v"]))
            steps["probs"] = _best(p_candidates, _left(quant_p, p, vq), on_outputs, p_reduce,
                                   len(q) * (p[0].numel() + size_pv), p_fallback)
            pq = quant_p(p, _as_head(steps["probs"]))
            steps["v"] = _best(head_candidates("v"), _right(uq, v, pq), on_outputs, per_head,
                               len(q) * (v[0].numel() + size_pv), fallback)

        for key in "qkv":
            _set_signed(self.quantizers[key], steps[key].repeat_interleave(self.head_dim))
        probs_q = self.quantizers["probs"]
        if isinstance(probs_q, TwinSoftmaxQuantizer):
            probs_q.set_qparams(steps["probs"].reshape(()), torch.zeros((), device=grid.device))
        else:
            _set_signed(probs_q, steps["probs"])


# ---------------------------------------------------------------- installing the quantizers


def _is_gelu(module: nn.Module) -> bool:
    return isinstance(module, nn.GELU) or type(module).__name__ in _GELU_NAMES


def _post_gelu_linears(model: nn.Module, family: str) -> set[str]:
    """Names of the Linears whose input is a GELU output (timm mlp.fc2, BERT output.dense)."""
    names = set()
    for name, module in model.named_modules():
        prefix = f"{name}." if name else ""
        if family in ("vit", "swin") and all(hasattr(module, a) for a in ("fc1", "act", "fc2")):
            if _is_gelu(module.act) and isinstance(getattr(module, "norm", nn.Identity()), nn.Identity):
                names.add(f"{prefix}fc2")
        elif family == "bert" and hasattr(module, "intermediate") and hasattr(module, "output"):
            if _is_gelu(getattr(module.intermediate, "intermediate_act_fn", None)):
                names.add(f"{prefix}output.dense")
    return names


def _timm_attentions(model: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    from timm.layers import Attention
    from timm.models.swin_transformer import WindowAttention

    for name, module in model.named_modules():
        if isinstance(module, (Attention, WindowAttention)):
            for attr in ("q_norm", "k_norm", "norm"):
                if not isinstance(getattr(module, attr, nn.Identity()), nn.Identity):
                    raise ValueError(
                        f"{name}.{attr} is not Identity: PTQ4ViT's matmul search assumes plain q@kᵀ and probs@v"
                    )
            if getattr(module, "gate", None) is not None:
                raise ValueError(f"{name} is a gated attention: PTQ4ViT's matmul search assumes plain probs@v")
            yield name, module


def _headwise(bits: int, point: str, axis: int = -1) -> FakeQuantizer:
    return FakeQuantizer(QuantSpec(bits, False, "channel", axis), point)


def _probs_quantizer(bits: int, cfg: PTQ4ViTConfig) -> FakeQuantizer:
    return TwinSoftmaxQuantizer(bits) if cfg.twin_softmax else _headwise(bits, "attn_probs", axis=1)


def _install(
    model: nn.Module, family: str, cfg: PTQ4ViTConfig, w_bits: int, a_bits: int
) -> tuple[list[_LinearSite], list[_AttentionSite]]:
    """Prepare the model with PTQ4ViT's quantizers (all off) and list what the search calibrates."""
    qcfg = cfg.quant_scheme()
    prepare(model, qcfg, family)
    acts = qcfg.quantizes_activations
    timm_attn = list(_timm_attentions(model)) if family in ("vit", "swin") else []
    fused_qkv = {f"{name}.qkv" for name, _ in timm_attn}
    post_gelu = _post_gelu_linears(model, family) if acts and cfg.twin_gelu else set()
    edges = edge_patterns(model, family)

    linear_sites = []
    for name, module in model.named_modules():
        if not isinstance(module, (QuantLinear, QuantConv2d)):
            continue
        body = cfg.edge_bits == "body" or not name_matches(name, edges)
        wb, ab = (w_bits, a_bits) if body else (cfg.edge_bits, cfg.edge_bits)
        if module.weight_quantizer.spec.bits != wb:
            module.weight_quantizer = FakeQuantizer(qcfg.weight_spec(wb), "weight")
        if isinstance(module, QuantConv2d):
            module.input_quantizer = None  # the image stays in FP, as the official code
        elif name in post_gelu:
            module.input_quantizer = TwinGeluQuantizer(ab)
        elif acts and module.input_quantizer.spec.bits != ab:
            module.input_quantizer = FakeQuantizer(qcfg.act_spec(ab), "linear_in")
        out_ch = module.weight.shape[0]
        if isinstance(module, QuantConv2d) or cfg.w_granularity == "channel":
            groups = out_ch
        else:
            groups = 3 if name in fused_qkv else 1
        linear_sites.append(_LinearSite(name, module, groups))

    attention_sites: list[_AttentionSite] = []
    if not acts:
        return linear_sites, attention_sites
    for name, attn in timm_attn:
        qkv = attn.qkv
        if not (isinstance(qkv.output_quantizer, SectionQuantizer) and isinstance(attn.attn_drop, QuantProbs)):
            continue
        quantizers = {key: _headwise(a_bits, f"attn_{key}") for key in "qkv"}
        qkv.output_quantizer.parts = nn.ModuleList([quantizers[key] for key in "qkv"])
        quantizers["probs"] = attn.attn_drop.quantizer = _probs_quantizer(a_bits, cfg)
        heads = attn.num_heads
        attention_sites.append(_AttentionSite(
            name, heads, qkv.out_features // 3 // heads, quantizers, (qkv,), quantizers["probs"], attn.proj
        ))
    for name, attn in model.named_modules():
        if family != "bert" or not isinstance(getattr(attn, "probs_quantizer", None), FakeQuantizer):
            continue
        projections = tuple(getattr(attn, p) for p in ("query", "key", "value"))
        quantizers = {key: _headwise(a_bits, f"attn_{key}") for key in "qkv"}
        for key, proj in zip("qkv", projections, strict=True):
            proj.output_quantizer = quantizers[key]
        quantizers["probs"] = attn.probs_quantizer = _probs_quantizer(a_bits, cfg)
        out_module = model.get_submodule(f"{name.rpartition('.')[0]}.output.dense")
        heads = attn.config.num_attention_heads
        attention_sites.append(_AttentionSite(
            name, heads, attn.attention_head_size, quantizers, projections, quantizers["probs"], out_module
        ))
    return linear_sites, attention_sites


# ---------------------------------------------------------------- the FP capture pass


def _micro_batches(batches: Iterable[Batch], size: int) -> Iterator[Batch]:
    """Split calibration batches into micro-batches of at most `size` examples."""
    for inputs, labels in batches:
        n = len(labels)
        for start in range(0, n, size):
            part = slice(start, start + size)
            if isinstance(inputs, Mapping):
                sliced = {k: v[part] if torch.is_tensor(v) and v.shape[:1] == (n,) else v for k, v in inputs.items()}
            else:
                sliced = inputs[part]
            yield sliced, labels[part]


def _task_loss(logits: torch.Tensor, labels: torch.Tensor, cfg: PTQ4ViTConfig, gen: torch.Generator) -> torch.Tensor:
    logits = logits.float()
    if cfg.hessian_loss == "labels":
        target = torch.as_tensor(labels).to(logits.device).long()
    else:  # a label drawn from the FP prediction: E[g gᵀ] is the Fisher, the Hessian of KL to the FP output
        target = torch.multinomial(logits.detach().softmax(-1).double().cpu(), 1, generator=gen).squeeze(1)
    return F.cross_entropy(logits, target.to(logits.device), reduction="sum")


def _capture(
    model: nn.Module,
    family: str,
    linear_sites: list[_LinearSite],
    attention_sites: list[_AttentionSite],
    batches: list[Batch],
    cfg: PTQ4ViTConfig,
    gen: torch.Generator,
) -> None:
    """Run the FP model (forward, and backward for the Hessian metric) once per micro-batch, keeping samples."""
    micro = list(_micro_batches(batches, CAPTURE_BATCH))
    per_batch = None if cfg.search_rows is None else math.ceil(cfg.search_rows / len(micro))
    inst_per_batch = None if cfg.attn_instances is None else math.ceil(cfg.attn_instances / len(micro))
    hessian = cfg.metric == "hessian"
    leaves: list[torch.Tensor] = []

    def leaf_output(_module: nn.Module, _args: tuple[Any, ...], out: torch.Tensor) -> torch.Tensor:
        leaf = out.detach().requires_grad_(True)  # token embeddings: where the backward pass may stop
        leaves.append(leaf)
        return leaf

    handles = [h for site in [*linear_sites, *attention_sites] for h in site.hook()]
    if hessian and family == "bert":
        handles.append(model.get_input_embeddings().register_forward_hook(leaf_output))
    grad_flags = [(p, p.requires_grad) for p in model.parameters()]
    was_training = model.training
    model.eval()
    try:
        for p, _ in grad_flags:
            p.requires_grad_(False)  # activation gradients only
        for inputs, labels in micro:
            leaves.clear()
            with token_mask_context(token_mask(inputs)), torch.set_grad_enabled(hessian):
                if hessian and family != "bert":
                    inputs = inputs.detach().float().requires_grad_(True)
                    leaves.append(inputs)
                logits = forward_logits(model, inputs)
                if hessian:
                    torch.autograd.grad(_task_loss(logits, labels, cfg, gen), leaves)
            for site in linear_sites:
                site.finish_batch(per_batch, gen, hessian)
            for site in attention_sites:
                site.finish_batch(inst_per_batch, cfg.attn_query_rows, gen, hessian)
    finally:
        for handle in handles:
            handle.remove()
        for p, flag in grad_flags:
            p.requires_grad_(flag)
        model.train(was_training)


# ---------------------------------------------------------------- the method


@register_ptq
class PTQ4ViT(PTQMethod):
    name = "ptq4vit"
    config_cls = PTQ4ViTConfig
    quantizes = "W+A"
    granularity = (
        "W per layer (qkv per q/k/v third; patch-embed per channel); A per tensor; "
        "q/k/v per head; softmax and GELU outputs twin-uniform"
    )
    default_calib_size = 32
    #: PTQ-aware ARNQ's cheaper in-training search, only with `ptq_settings: in_training` (cost and effect:
    #: bench/README.md §8); not the default, being unfaithful on the text models (results/COMPOSITION.md 15, 18)
    shadow_params = {"n_grid": 20, "rounds": 1}
    shadow_settings = "configured"
    families = ("vit", "swin", "bert")
    paper = "Yuan et al., PTQ4ViT, ECCV 2022 (hahnyuan/PTQ4ViT)"
    description = (
        "twin-uniform softmax/GELU quantizers; weight, input and head-wise matmul steps searched on a "
        "0.01..1.2 x min-max grid (101) in 3 alternating rounds by a Hessian-guided (Fisher) output error"
    )

    def _quantize(self, model: nn.Module, cfg: PTQ4ViTConfig, calib: Calibration) -> None:
        family, batches, device, w_bits, a_bits = calib.family, calib.batches, calib.device, cfg.w_bits, cfg.a_bits
        linear_sites, attention_sites = _install(model, family, cfg, w_bits, a_bits)
        gen = torch.Generator().manual_seed(cfg.seed)
        _capture(model, family, linear_sites, attention_sites, batches, cfg, gen)
        grid = scale_grid(cfg.alpha, cfg.beta, cfg.n_grid).to(device)
        with torch.no_grad():
            for site in [*linear_sites, *attention_sites]:
                site.search(grid, cfg.rounds)
