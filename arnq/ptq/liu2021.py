"""Liu et al. 2021: post-training quantization for vision transformers (weights and activations).

Liu, Wang, Han, Zhang, Ma, Gao, "Post-Training Quantization for Vision Transformer"
(NeurIPS 2021, arXiv 2106.14156). No official code; the recipe follows the paper.

Per Linear of the transformer blocks, blocks in order, each block on the inputs of the model
whose earlier blocks are already quantized:
- similarity-aware search: weight (per output row, symmetric) and input (per tensor) steps
  scaled on a linear grid [alpha, beta] x the min-max step, alternately, by the Pearson
  correlation of the layer output with the FP output;
- ranking-aware attention: the q and k steps by Pearson(A, A^) - gamma * L_rank, a hinge
  penalty on flipped attention-score order;
- bias correction: b <- b - E[W^ Q(x) - W x];
- optional mixed-precision weights (`mp_avg_bits`): bits per Linear from nuclear-norm
  sensitivities under a size budget.

The other points (v, softmax output, the patch embedding and head) keep the min-max steps.
Formulas and deviations: docs/ptq.md#liu2021.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from arnq.ptq.base import Calibration, PTQConfig, PTQMethod, register_ptq
from arnq.ptq.common import (
    AttentionCall,
    Batch,
    block_linears,
    capture_calls,
    collect,
    fold_rows,
    sample_rows,
)
from arnq.ptq.gptq import block_name, blocks_in_order, symmetric_scale
from arnq.quant import calibrate, prepare
from arnq.quant.api import _is_hf_self_attention, _is_timm_attention, quantizers
from arnq.quant.fake_quant import fake_quantize, quant_range
from arnq.quant.modules import QuantLinear
from arnq.quant.quantizer import FakeQuantizer, QuantSpec


def _centered(a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A tensor as a flat float64 vector less its mean, and that vector's norm."""
    a = a.flatten().double()
    a = a - a.mean()
    return a, a.norm()


def pearson(a: torch.Tensor | tuple[torch.Tensor, torch.Tensor], b: torch.Tensor) -> float:
    """Pearson correlation of two tensors taken as flat vectors; `a` may be given as `_centered(a)`,
    which a search scoring many candidates against one reference computes once."""
    a, a_norm = _centered(a) if isinstance(a, torch.Tensor) else a
    b, b_norm = _centered(b)
    return float((a @ b) / (a_norm * b_norm).clamp_min(1e-30))


def ranking_loss(fp: torch.Tensor, q: torch.Tensor, i: torch.Tensor, j: torch.Tensor, margin: float) -> torch.Tensor:
    """Mean hinge max(margin - (q_i - q_j) sign(fp_i - fp_j), 0) over the key pairs (i, j) of every query row."""
    return _ranking_loss(torch.sign(fp[..., i] - fp[..., j]), q, i, j, margin)


def _ranking_loss(order: torch.Tensor, q: torch.Tensor, i: torch.Tensor, j: torch.Tensor,
                  margin: float) -> torch.Tensor:
    """`ranking_loss` with the reference's order sign(fp_i - fp_j) computed beforehand."""
    return torch.relu(margin - (q[..., i] - q[..., j]) * order).mean()


def _best(grid: torch.Tensor, score: Callable[[float], float]) -> float:
    """The grid factor with the highest score (the first on ties)."""
    scores = [score(float(g)) for g in grid]
    return float(grid[max(range(len(scores)), key=scores.__getitem__)])


@torch.no_grad()
def search_linear(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    w_bits: int,
    in_q: FakeQuantizer | None,
    grid: torch.Tensor,
    rounds: int,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Alternating Pearson search of one Linear's weight and input steps; returns (row scales, input scale)."""
    w = weight.detach().float()
    x = x.float()
    b = None if bias is None else bias.detach().float()
    target = _centered(torch.nn.functional.linear(x, w, b))
    w0 = symmetric_scale(w, w_bits).unsqueeze(1)
    wmin, wmax = quant_range(w_bits, True)

    def weight_at(g: float) -> torch.Tensor:
        s = w0 * g
        return torch.clamp(torch.round(w / s), wmin, wmax) * s

    input_at = None
    if in_q is not None:
        s0, zp0 = in_q.scale.float(), in_q.zero_point.float()

        def input_at(g: float) -> torch.Tensor:
            return fake_quantize(x, s0 * g, zp0, in_q.qmin, in_q.qmax)

    g_w = g_x = 1.0
    xq = x if input_at is None else input_at(g_x)
    for _ in range(rounds):
        g_w = _best(grid, lambda g, xq=xq: pearson(target, torch.nn.functional.linear(xq, weight_at(g), b)))
        if input_at is not None:
            wq = weight_at(g_w)
            g_x = _best(grid, lambda g, wq=wq: pearson(target, torch.nn.functional.linear(input_at(g), wq, b)))
            xq = input_at(g_x)
    return (w0 * g_w).squeeze(1), None if in_q is None else in_q.scale * g_x


@torch.no_grad()
def correct_bias(module: nn.Linear, x: torch.Tensor, chunk: int = 4096) -> None:
    """b <- b - E[W^ Q(x) - W x] over the rows x (the module's quantizers as they are set)."""
    if module.bias is None:
        return
    w_fp = module.weight.detach()
    total = torch.zeros_like(module.bias, dtype=torch.float32)
    for start in range(0, x.shape[0], chunk):
        xb = x[start:start + chunk].to(w_fp.dtype)
        err = module(xb) - torch.nn.functional.linear(xb, w_fp, module.bias)
        total += err.float().sum(dim=0)
    module.bias.data -= (total / x.shape[0]).to(module.bias.dtype)


def allocate_bits(sensitivity: dict[str, float], sizes: dict[str, int], choices: Sequence[int],
                  avg_bits: float) -> dict[str, int]:
    """Bits per layer from `choices` minimising sum sigma 4^-b under sum n b <= avg_bits sum n (greedy marginal gain)."""
    choices = sorted(choices)
    budget = avg_bits * sum(sizes.values())
    bits = {name: choices[0] for name in sizes}
    used = sum(sizes[n] * choices[0] for n in sizes)
    if used > budget + 1e-6:
        raise ValueError(f"mp_avg_bits={avg_bits}: below the smallest bit choice {choices[0]}; raise it or mp_span")
    while True:
        best, best_gain = None, 0.0
        for name, b in bits.items():
            k = choices.index(b)
            if k + 1 == len(choices):
                continue
            step = choices[k + 1] - b
            if used + sizes[name] * step > budget + 1e-6:
                continue
            gain = sensitivity[name] * (4.0 ** -b - 4.0 ** -choices[k + 1]) / (sizes[name] * step)
            if gain > best_gain:
                best, best_gain = name, gain
        if best is None:
            return bits
        step = choices[choices.index(bits[best]) + 1] - bits[best]
        used += sizes[best] * step
        bits[best] += step


def _keep_first(n: int) -> Callable[[torch.Tensor | None, torch.Tensor], torch.Tensor]:
    def fold(acc: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor:
        if acc is not None and acc.shape[0] >= n:
            return acc
        x = x.float()
        return (x if acc is None else torch.cat([acc, x]))[:n]
    return fold


def nuclear_sensitivity(model: nn.Module, names: Sequence[str], batches: Sequence[Batch], rows: int) -> dict[str, float]:
    """Nuclear norm of each Linear's FP output features on (at most) `rows` calibration rows."""
    outputs = fold_rows(model, names, batches, _keep_first(rows), what="output")
    return {name: float(torch.linalg.matrix_norm(y, ord="nuc")) for name, y in outputs.items()}


@dataclass
class _Attention:
    name: str
    module: nn.Module
    q: FakeQuantizer
    k: FakeQuantizer
    probs: FakeQuantizer


def _attentions(model: nn.Module, family: str) -> list[_Attention]:
    """Every attention with live q, k and softmax-output points."""
    sites = []
    for name, module in model.named_modules():
        if family in ("vit", "swin") and _is_timm_attention(module):
            qkv = getattr(module.qkv, "output_quantizer", None)
            probs = getattr(getattr(module, "attn_drop", None), "quantizer", None)
            parts = list(getattr(qkv, "parts", []))
            if len(parts) == 3 and all(isinstance(p, FakeQuantizer) for p in parts[:2]) and probs is not None:
                sites.append(_Attention(name, module, parts[0], parts[1], probs))
        elif family == "bert" and _is_hf_self_attention(module):
            q, k = getattr(module.query, "output_quantizer", None), getattr(module.key, "output_quantizer", None)
            probs = getattr(module, "probs_quantizer", None)
            if isinstance(q, FakeQuantizer) and isinstance(k, FakeQuantizer) and probs is not None:
                sites.append(_Attention(name, module, q, k, probs))
    return sites


@torch.no_grad()
def _replay(site: _Attention, calls: Sequence[AttentionCall]) -> list[torch.Tensor]:
    """Attention maps (softmax outputs, before their own quantizer) of the module on the captured calls."""
    maps: list[torch.Tensor] = []
    handle = site.probs.register_forward_hook(lambda _m, args, _out: maps.append(args[0].detach().float()))
    probs_state = site.probs.quantizing
    site.probs.quantizing = False
    try:
        for call in calls:
            site.module(*call.args, **call.kwargs)
    finally:
        handle.remove()
        site.probs.quantizing = probs_state
    return maps


def search_attention(site: _Attention, calls: Sequence[AttentionCall], grid: torch.Tensor, rounds: int,
                     gamma: float, margin: float, pairs: int, gen: torch.Generator) -> tuple[float, float]:
    """Alternating search of the q and k step factors for Pearson(A, A^) - gamma * L_rank; returns (g_q, g_k)."""
    owned = [q for _, q in quantizers(site.module)]
    states = [(q, q.quantizing) for q in owned]
    for q in owned:
        q.quantizing = False
    reference = _replay(site, calls)
    for q, state in states:
        q.quantizing = state
    index = []
    for a in reference:
        t = a.shape[-1]
        index.append((torch.randint(0, t, (pairs,), generator=gen), torch.randint(0, t, (pairs,), generator=gen)))
    flat_reference = _centered(torch.cat([r.flatten() for r in reference]))
    orders = [torch.sign(r[..., i] - r[..., j]) for r, (i, j) in zip(reference, index, strict=True)]
    base = {p: (p.scale.clone(), p.zero_point.clone()) for p in (site.q, site.k)}
    factors = {site.q: 1.0, site.k: 1.0}

    def score(point: FakeQuantizer, g: float) -> float:
        point.set_qparams(base[point][0] * g, base[point][1])
        maps = _replay(site, calls)
        corr = pearson(flat_reference, torch.cat([m.flatten() for m in maps]))
        rank = sum(float(_ranking_loss(o, m, i, j, margin)) for o, m, (i, j) in zip(orders, maps, index, strict=True))
        return corr - gamma * rank / len(maps)

    for point in (site.q, site.k):
        point.quantizing = True
    try:
        with _fixed_projections(site.module, calls):
            for _ in range(rounds):
                for point in (site.q, site.k):
                    factors[point] = _best(grid, lambda g, p=point: score(p, g))
                    point.set_qparams(base[point][0] * factors[point], base[point][1])
    finally:
        for q, state in states:
            q.quantizing = state
    return factors[site.q], factors[site.k]


@contextmanager
def _fixed_projections(module: nn.Module, calls: Sequence[AttentionCall]) -> Iterator[None]:
    """Within the block, each quantized Linear of `module` fed one of the calls' own tensors (the q, k
    and v projections of the attention's input) computes its product with its quantized input and
    weight once and reuses it; only its output quantizer, whose q and k steps the search moves, runs
    on every replay. Linears fed anything else (an output projection) run as usual."""
    live = {id(v) for call in calls for v in (*call.args, *call.kwargs.values()) if isinstance(v, torch.Tensor)}
    patched = []
    for linear in module.modules():
        if not isinstance(linear, QuantLinear) or linear.training:
            continue
        products: dict[int, torch.Tensor] = {}

        def forward(x: torch.Tensor, linear: QuantLinear = linear, products: dict = products) -> torch.Tensor:
            if id(x) not in live:
                return QuantLinear.forward(linear, x)
            if id(x) not in products:
                xq = x if linear.input_quantizer is None else linear.input_quantizer(x)
                products[id(x)] = torch.nn.functional.linear(xq, linear.quantized_weight(), linear.effective_bias())
            y = products[id(x)]
            return y if linear.output_quantizer is None else linear.output_quantizer(y)

        linear.forward = forward
        patched.append(linear)
    try:
        yield
    finally:
        for linear in patched:
            del linear.forward


@dataclass(frozen=True)
class Liu2021Config(PTQConfig):
    alpha: float = 0.5
    beta: float = 1.2
    candidates: int = 100
    rounds: int = 2
    search_rows: int = 1024
    ranking: bool = True
    gamma: float = 0.1  # weight of the ranking loss
    margin: float = 0.0  # theta of the hinge
    ranking_pairs: int = 64
    ranking_batches: int = 2
    attention_candidates: int = 50
    bias_correction: bool = True
    mp_avg_bits: float | None = None  # None: every Linear at w_bits
    mp_span: int = 2
    sensitivity_rows: int = 512
    seed: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 < self.alpha < self.beta:
            raise ValueError(f"alpha={self.alpha!r}, beta={self.beta!r}: use 0 < alpha < beta (paper 0.5, 1.2)")
        for name in ("candidates", "rounds", "search_rows", "ranking_pairs", "ranking_batches",
                     "attention_candidates", "sensitivity_rows"):
            value = getattr(self, name)
            if not (isinstance(value, int) and value >= 1):
                raise ValueError(f"{name}={value!r}: use a positive integer")
        if self.gamma < 0 or self.margin < 0:
            raise ValueError(f"gamma={self.gamma!r}, margin={self.margin!r}: use non-negative values")
        if self.mp_avg_bits is not None and not 2 <= self.mp_avg_bits <= 8:
            raise ValueError(f"mp_avg_bits={self.mp_avg_bits!r}: the average weight bits must be in [2, 8] (or null)")
        if not (isinstance(self.mp_span, int) and self.mp_span >= 0):
            raise ValueError(f"mp_span={self.mp_span!r}: use a non-negative integer (bit choices w_bits +- span)")


def _install_weight(module: nn.Module, scales: torch.Tensor, bits: int) -> None:
    quantizer = FakeQuantizer(QuantSpec(bits, True, "channel", 0), "weight").to(module.weight.device)
    quantizer.set_qparams(scales, torch.zeros_like(scales))
    quantizer.quantizing = True
    module.weight_quantizer = quantizer


@register_ptq
class Liu2021(PTQMethod):
    name = "liu2021"
    config_cls = Liu2021Config
    granularity = ("W per output row, symmetric; A per tensor; steps searched on [0.5, 1.2] x min-max by "
                   "Pearson correlation; q/k with a ranking loss; optional mixed-precision weights")
    default_calib_size = 1024
    #: PTQ-aware ARNQ's repeated in-training runs: cheaper search (cost and effect: bench/README.md §8)
    shadow_params = {"candidates": 25, "attention_candidates": 10, "rounds": 1, "search_rows": 256}
    paper = "PTQ for Vision Transformer (Liu et al., NeurIPS 2021)"
    description = ("alternating Pearson search of weight/input steps, attention ranking loss, bias correction, "
                   "nuclear-norm mixed precision under a size budget")
    smoke_params = {"candidates": 11, "attention_candidates": 5, "rounds": 1, "search_rows": 256}

    def _quantize(self, model: nn.Module, cfg: Liu2021Config, calib: Calibration) -> None:
        family, batches, device, w_bits = calib.family, calib.batches, calib.device, cfg.w_bits
        linears = [name for name, _ in block_linears(model, family)]
        bits = {name: w_bits for name in linears}
        if cfg.mp_avg_bits is not None:
            sensitivity = nuclear_sensitivity(model, linears, batches, cfg.sensitivity_rows)
            sizes = {name: model.get_submodule(name).weight.numel() for name in linears}
            choices = range(max(2, w_bits - cfg.mp_span), min(8, w_bits + cfg.mp_span) + 1)
            bits = allocate_bits(sensitivity, sizes, choices, cfg.mp_avg_bits)
        prepare(model, cfg.quant_scheme(), family)
        calibrate(model, batches, device=device)  # min-max starting steps; every point stays off
        gen = torch.Generator().manual_seed(cfg.seed)
        grid = torch.linspace(cfg.alpha, cfg.beta, cfg.candidates)
        attention_grid = torch.linspace(cfg.alpha, cfg.beta, cfg.attention_candidates)
        sites = _attentions(model, family) if cfg.ranking else []
        for names in blocks_in_order(model, family):
            inputs = collect(model, names, batches)  # earlier blocks already quantized
            for name in names:
                module = model.get_submodule(name)
                x = inputs[name]
                in_q = module.input_quantizer
                w_scale, in_scale = search_linear(sample_rows(x, cfg.search_rows, gen), module.weight, module.bias,
                                                  bits[name], in_q, grid, cfg.rounds)
                _install_weight(module, w_scale, bits[name])
                if in_q is not None:
                    in_q.set_qparams(in_scale, in_q.zero_point)
                    in_q.quantizing = True
                if cfg.bias_correction:
                    correct_bias(module, x)
            block = block_name(names[0])
            for site in sites:
                if site.name.startswith(block + "."):
                    calls = capture_calls(model, [site.name], batches[:cfg.ranking_batches])[site.name]
                    search_attention(site, calls, attention_grid, cfg.rounds, cfg.gamma, cfg.margin,
                                     cfg.ranking_pairs, gen)
            for qname, q in quantizers(model):
                if qname.startswith(block + "."):
                    q.quantizing = True  # later blocks see this block quantized
        model.arnq_weight_bits = bits


__all__ = ["Liu2021", "Liu2021Config", "allocate_bits", "pearson", "ranking_loss", "search_linear"]
