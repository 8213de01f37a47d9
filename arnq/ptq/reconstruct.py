"""Block reconstruction engine shared by BRECQ and QDrop.

One transformer block at a time (timm ViT `Block`, Swin `SwinTransformerBlock` and
`PatchMerging`, HF `BertLayer`: the units `gptq.blocks_in_order` groups Linears by), in
module order: the block's calibration inputs and its FP outputs are captured, then the block
alone is optimised to reproduce the FP outputs:

- weights: AdaRound on a per-row symmetric grid whose step is searched per row (shrink
  factors 1 - 0.01 i, i < 80, least L2.4 error, as the official MSE init); the rectified
  sigmoid and the beta schedule are `arnq.ptq.adaround`'s, the regulariser
  lam * sum(1 - |2h - 1|^beta) starts after `warmup` of the steps; Adam (`lr`).
- activation steps: every live activation point of the block (Linear inputs, q/k/v, softmax
  output) learns its step as base * exp(g) (LSQ's straight-through gradient on a log gain),
  Adam (`lr_step`) with cosine annealing to 0.
- loss: sum over channels, mean over real tokens, of |out - target|^p; or the official
  code's Fisher-weighted error (out - target)^2 (|g| + 1)^2 with g the gradient of a loss at
  the block output (`fisher`: "kl", KL(FP logits || logits of the model quantized up to this
  block), as the official code; "labels", the task loss on the calibration labels).
- QDrop (`drop_prob` p > 0): each element of each activation point's output keeps its FP
  value with probability p, and the block input takes each element from the FP model with
  probability p, else from the quantized model. Nothing is dropped outside the optimisation.

After a block the rounding is hard (h >= 0.5 rounds up): the rounded weights are written in
place with a `GroupWeightQuantizer` holding their steps, so fake quantization maps them to
themselves, and later blocks see this block quantized. Details: docs/ptq.md#brecq,
docs/ptq.md#qdrop.
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from arnq.batch import token_mask
from arnq.ptq.adaround import GAMMA, ZETA, beta_schedule, rectified_sigmoid
from arnq.ptq.base import PTQConfig
from arnq.ptq.common import Batch, rows, run_model
from arnq.ptq.gptq import block_name, blocks_in_order, install_weights
from arnq.ptq.mrem import LearnedSteps, ModuleData, run_units
from arnq.quant import QuantConfig, quantization_disabled, quantizers
from arnq.quant.fake_quant import fake_quantize, quant_range
from arnq.quant.modules import QuantLinear
from arnq.quant.quantizer import FakeQuantizer

FISHER_MODES = ("off", "kl", "labels")
SCALE_SHRINK_STEPS = 80  # the official weight-step search: max|w| (1 - 0.01 i), i < 80
SCALE_SEARCH_P = 2.4  # ... scored by the L2.4 error


@dataclass(frozen=True)
class ReconConfig(PTQConfig):
    """Knobs shared by the block-reconstruction methods (not registered itself)."""

    iters: int = 500  # steps per block (official 20,000 on a GPU)
    batch_size: int = 32  # examples per step
    lr: float = 1e-2  # Adam lr of the rounding variables V (official 1e-3, Adam's default)
    lr_step: float = 1e-2  # Adam lr of the log step gains (cosine-annealed to 0)
    lam: float = 0.01  # weight of the rounding regulariser
    warmup: float = 0.2  # fraction of the steps without the regulariser (beta held at b_start)
    b_start: float = 20.0
    b_end: float = 2.0
    seed: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("iters", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}={value!r}: use a positive integer")
        if self.lr < 0 or self.lr_step < 0:
            raise ValueError(f"lr={self.lr!r}, lr_step={self.lr_step!r}: use non-negative learning rates "
                             "(0 keeps round-to-nearest / the initial steps)")
        if self.lam < 0:
            raise ValueError(f"lam={self.lam!r}: the regulariser weight must be >= 0 (official 0.01)")
        if not 0 <= self.warmup < 1:
            raise ValueError(f"warmup={self.warmup!r}: the warm-up fraction must be in [0, 1), e.g. 0.2")
        if not 0 < self.b_end <= self.b_start:
            raise ValueError(f"b_start={self.b_start!r}, b_end={self.b_end!r}: need 0 < b_end <= b_start "
                             "(official 20 -> 2)")

    def quant_scheme(self) -> QuantConfig:
        """Activation steps start from the least-L2 shrunk range (OMSE), as the official MSE init."""
        return QuantConfig(w_bits=self.w_bits, a_bits=self.a_bits, a_observer="omse")


@dataclass(frozen=True)
class Stage:
    """What one pass over the blocks optimises and how it feeds them."""

    iters: int
    rounding: bool  # learn the rounding of the block's weights
    learn_steps: bool  # learn the steps of the block's live activation points
    quant_input: bool  # block input from the quantized model (else from the FP model)
    drop_prob: float = 0.0  # QDrop: probability that an element keeps its FP value
    p_norm: float = 2.0  # exponent of the reconstruction error
    fisher: str = "off"


@dataclass
class BlockRecord:
    """One block's reconstruction: output MSE (per element, on its calibration inputs) and time."""

    block: str
    stage: str
    rtn_mse: float  # round-to-nearest weights and the initial steps
    mse: float  # after reconstruction (hard rounding)
    seconds: float


# ---------------------------------------------------------------- weight rounding


def search_row_scale(w: torch.Tensor, bits: int, steps: int = SCALE_SHRINK_STEPS,
                     p: float = SCALE_SEARCH_P) -> torch.Tensor:
    """Per-row symmetric step of a (rows, cols) weight: max|w| (1 - 0.01 i), i < steps, least L_p error."""
    w = w.detach().float()
    qmin, qmax = quant_range(bits, True)
    amax = w.abs().amax(dim=1, keepdim=True).clamp_min(1e-8)
    best_scale, best_err = amax / qmax, torch.full_like(amax, float("inf"))
    for i in range(steps):
        scale = amax * (1 - 0.01 * i) / qmax
        err = (fake_quantize(w, scale, torch.zeros_like(scale), qmin, qmax) - w).abs().pow(p).sum(dim=1, keepdim=True)
        better = err < best_err
        best_scale, best_err = torch.where(better, scale, best_scale), torch.where(better, err, best_err)
    return best_scale.squeeze(1)


class SoftRounding(nn.Module):
    """A Linear's AdaRound weight s clip(floor(W/s) + h, qmin, qmax), h by `mode`.

    soft: the rectified sigmoid h(V) (trained); nearest: round-to-nearest; hard: h(V) >= 0.5.
    V starts where h(V) is the fractional part of W/s, so the soft weight starts at W.
    """

    def __init__(self, weight: torch.Tensor, scale: torch.Tensor, bits: int) -> None:
        super().__init__()
        w = weight.detach().float()
        self.qmin, self.qmax = quant_range(bits, True)
        self.register_buffer("scale", scale.detach().float().reshape(-1, 1))
        self.register_buffer("w_floor", torch.floor(w / self.scale))
        rest = (w / self.scale - self.w_floor).clamp(1e-4, 1 - 1e-4)
        self.v = nn.Parameter(-torch.log((ZETA - GAMMA) / (rest - GAMMA) - 1))
        self.register_buffer("nearest", (w / self.scale - self.w_floor >= 0.5).float())
        self.mode = "soft"

    def h(self) -> torch.Tensor:
        if self.mode == "soft":
            return rectified_sigmoid(self.v)
        if self.mode == "nearest":
            return self.nearest
        return (self.v.detach() >= 0).float()

    def forward(self, _weight: torch.Tensor) -> torch.Tensor:
        return torch.clamp(self.w_floor + self.h(), self.qmin, self.qmax) * self.scale

    def regulariser(self, beta: float) -> torch.Tensor:
        """sum(1 - |2h - 1|^beta): pushes every h(V) to 0 or 1."""
        return (1 - (2 * rectified_sigmoid(self.v) - 1).abs().pow(beta)).sum()


# ---------------------------------------------------------------- QDrop


@contextlib.contextmanager
def quantization_dropped(points: Sequence[FakeQuantizer], drop_prob: float,
                         generator: torch.Generator) -> Iterator[None]:
    """Within the block, each element of each point's output keeps its FP value with probability `drop_prob`."""
    def hook(_q: nn.Module, args: tuple[Any, ...], out: torch.Tensor) -> torch.Tensor:
        keep_fp = torch.rand(out.shape, generator=generator, device=generator.device) < drop_prob
        return torch.where(keep_fp.to(out.device), args[0], out)

    handles = [q.register_forward_hook(hook) for q in points] if drop_prob > 0 else []
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def mixed_input(q_in: torch.Tensor, fp_in: torch.Tensor, drop_prob: float, generator: torch.Generator) -> torch.Tensor:
    """QDrop's block input: each element from the FP model with probability `drop_prob`, else the quantized one."""
    if drop_prob <= 0:
        return q_in
    keep_fp = torch.rand(q_in.shape, generator=generator, device=generator.device) < drop_prob
    return torch.where(keep_fp.to(q_in.device), fp_in, q_in)


# ---------------------------------------------------------------- data capture


class _Stop(Exception):
    """Raised by the capture hook once the block has run: the rest of the model is not needed."""


def _hidden(out: Any) -> torch.Tensor:
    return out[0] if isinstance(out, tuple) else out


def _with_hidden(out: Any, hidden: torch.Tensor) -> Any:
    return (hidden, *out[1:]) if isinstance(out, tuple) else hidden


@torch.no_grad()
def capture_block(model: nn.Module, name: str, batches: Sequence[Batch]
                  ) -> tuple[list[torch.Tensor], list[tuple[tuple, dict]], list[torch.Tensor]]:
    """Per batch: the block's input, its other (args, kwargs), and its output; the model stops after the block."""
    block = model.get_submodule(name)
    ins: list[torch.Tensor] = []
    tails: list[tuple[tuple, dict]] = []
    outs: list[torch.Tensor] = []

    def pre(_m: nn.Module, args: tuple, kwargs: dict) -> None:
        ins.append(args[0].detach())
        tails.append((tuple(a.detach() if torch.is_tensor(a) else a for a in args[1:]), dict(kwargs)))

    def post(_m: nn.Module, _args: tuple, out: Any) -> None:
        outs.append(_hidden(out).detach())
        raise _Stop

    handles = [block.register_forward_pre_hook(pre, with_kwargs=True), block.register_forward_hook(post)]
    try:
        for inputs, _ in batches:
            with contextlib.suppress(_Stop):
                run_model(model, inputs)
    finally:
        for handle in handles:
            handle.remove()
    return ins, tails, outs


@contextlib.contextmanager
def quantized_through(model: nn.Module, name: str) -> Iterator[None]:
    """Quantization on up to and including block `name` (module order), off after it: the official
    `quantize_model_till`."""
    points = list(quantizers(model))
    last = max((i for i, (n, _) in enumerate(points) if n.startswith(f"{name}.")), default=-1)
    later = [(q, q.quantizing) for _, q in points[last + 1:]]
    for q, _ in later:
        q.quantizing = False
    try:
        yield
    finally:
        for q, state in later:
            q.quantizing = state


def fisher_weights(model: nn.Module, fp_model: nn.Module, name: str, batches: Sequence[Batch],
                   mode: str) -> list[torch.Tensor]:
    """Per batch: (|g| + 1)^2, g the gradient of the loss at the block's output (the official code's diagonal
    Fisher, damped); loss = KL(FP logits || logits with quantization through this block), or the task loss."""
    block = model.get_submodule(name)
    grads: list[torch.Tensor] = []
    holder: dict[str, torch.Tensor] = {}

    def post(_m: nn.Module, _args: tuple, out: Any) -> Any:
        holder["h"] = _hidden(out).detach().requires_grad_(True)
        return _with_hidden(out, holder["h"])

    handle = block.register_forward_hook(post)
    try:
        for inputs, labels in batches:
            if mode == "kl":
                with torch.no_grad(), quantization_disabled(fp_model):
                    target = F.softmax(run_model(fp_model, inputs).float(), dim=-1)
            with torch.enable_grad(), quantized_through(model, name):
                logits = run_model(model, inputs).float()
                if mode == "kl":
                    loss = F.kl_div(F.log_softmax(logits, dim=-1), target, reduction="batchmean")
                else:
                    loss = task_loss(logits, labels)
                (grad,) = torch.autograd.grad(loss, holder["h"])
            grads.append((grad.abs() + 1).pow(2))
    finally:
        handle.remove()
    return grads


def task_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy on class-index labels (MSE for one-output regression heads)."""
    labels = labels.to(logits.device)
    if logits.shape[-1] == 1:
        return F.mse_loss(logits.squeeze(-1), labels.float())
    if labels.is_floating_point() and not torch.equal(labels, labels.round()):
        raise ValueError("fisher='labels' needs class-index labels; use fisher='kl' (no labels needed)")
    labels = labels.long()
    if labels.min() < 0 or labels.max() >= logits.shape[-1]:
        raise ValueError(f"fisher='labels': labels outside 0..{logits.shape[-1] - 1}; use fisher='kl'")
    return F.cross_entropy(logits, labels)


# ---------------------------------------------------------------- one block


@dataclass
class BlockData:
    """A block's training data in steps of `batch_size` examples."""

    fp: ModuleData  # FP input, FP output target, other arguments, token masks
    q_in: list[torch.Tensor]  # input from the quantized model
    fisher: list[torch.Tensor] | None = None


def _pieces(tensors: Sequence[torch.Tensor], size: int) -> list[torch.Tensor]:
    return [t[i:i + size] for t in tensors for i in range(0, t.shape[0], size)]


def live_act_points(block: nn.Module) -> list[FakeQuantizer]:
    """The block's activation points that quantize with a fixed (calibrated) step."""
    return [q for q in block.modules() if isinstance(q, FakeQuantizer) and q.point != "weight" and q.quantizing
            and not q.dynamic and q.scale is not None]


def reconstruction_error(out: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None,
                         p_norm: float, fisher: torch.Tensor | None = None) -> torch.Tensor:
    """sum over channels, mean over real tokens, of |out - target|^p, or (out - target)^2 * fisher."""
    diff = rows(out - target, mask).float()
    if fisher is not None:
        return (diff.pow(2) * rows(fisher, mask).float()).sum(dim=1).mean()
    return diff.abs().pow(p_norm).sum(dim=1).mean()


@torch.no_grad()
def block_mse(block: nn.Module, data: BlockData, quant_input: bool) -> float:
    """Mean squared error per element of the block's output over its data (no dropping, no mixing)."""
    total, count = 0.0, 0
    for k, target in enumerate(data.fp.fp_out):
        x = data.q_in[k] if quant_input else data.fp.fp_in[k]
        diff = rows(run_units([block], x, data.fp.tails[k]) - target, data.fp.masks[k]).float()
        total, count = total + float(diff.pow(2).sum()), count + diff.numel()
    return total / max(count, 1)


def reconstruct_block(block: nn.Module, linears: Sequence[QuantLinear], data: BlockData, cfg: ReconConfig,
                      stage: Stage, generator: torch.Generator) -> tuple[float, float]:
    """Optimise one block in place (rounding hard and installed when it returns); returns (rtn_mse, mse)."""
    roundings = []
    if stage.rounding:
        for m in linears:
            rounding = SoftRounding(m.weight, search_row_scale(m.weight, cfg.w_bits), cfg.w_bits).to(m.weight.device)
            m.weight_quantizer = rounding
            roundings.append(rounding)
    points = live_act_points(block) if stage.learn_steps else []
    for r in roundings:
        r.mode = "nearest"
    rtn_mse = block_mse(block, data, stage.quant_input)
    for r in roundings:
        r.mode = "soft"
    steps = LearnedSteps(nn.ModuleList(points)) if points else None
    groups = [{"params": [r.v for r in roundings], "lr": cfg.lr}] if roundings else []
    if steps is not None:
        groups.append({"params": steps.gains, "lr": cfg.lr_step})
    n = len(data.fp.fp_out)
    try:
        if groups:
            opt = torch.optim.Adam(groups)
            cosine = [lambda _s: 1.0] * len(groups)
            if steps is not None:
                cosine[-1] = lambda s: 0.5 * (1 + math.cos(math.pi * s / stage.iters))
            sched = torch.optim.lr_scheduler.LambdaLR(opt, cosine)
            with torch.enable_grad(), quantization_dropped(points, stage.drop_prob, generator):
                for step in range(stage.iters):
                    k = int(torch.randint(n, (1,), generator=generator, device=generator.device))
                    x = data.q_in[k] if stage.quant_input else data.fp.fp_in[k]
                    x = mixed_input(x, data.fp.fp_in[k], stage.drop_prob, generator)
                    out = run_units([block], x, data.fp.tails[k])
                    loss = reconstruction_error(out, data.fp.fp_out[k], data.fp.masks[k], stage.p_norm,
                                                None if data.fisher is None else data.fisher[k])
                    if roundings and step >= cfg.warmup * stage.iters and cfg.lam > 0:
                        beta = beta_schedule(step, stage.iters, cfg.warmup, cfg.b_start, cfg.b_end)
                        loss = loss + cfg.lam * sum(r.regulariser(beta) for r in roundings)
                    if not torch.isfinite(loss):
                        raise FloatingPointError(f"reconstruction loss is {float(loss)} at step {step}; "
                                                 f"lower lr={cfg.lr} or lr_step={cfg.lr_step}")
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    sched.step()
    finally:
        if steps is not None:
            steps.finish()
        for r in roundings:
            r.mode = "hard"
    mse = block_mse(block, data, stage.quant_input)
    for m, r in zip(linears if roundings else [], roundings, strict=True):
        with torch.no_grad():
            weight = r(m.weight).to(m.weight.dtype)
        install_weights(m, weight, r.scale.squeeze(1), cfg.w_bits, None)
        m.weight_quantizer.quantizing = True
    return rtn_mse, mse


# ---------------------------------------------------------------- every block


@contextlib.contextmanager
def frozen_parameters(model: nn.Module) -> Iterator[None]:
    """The model's own parameters take no gradient (only rounding variables and step gains train)."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


def reconstruct_model(model: nn.Module, fp_model: nn.Module, family: str, batches: Sequence[Batch],
                      cfg: ReconConfig, stage: Stage, label: str, device: torch.device | str = "cpu"
                      ) -> list[BlockRecord]:
    """Reconstruct every block in order; `fp_model` is a prepared FP copy (the targets, QDrop's FP inputs)."""
    records = []
    masks = [token_mask(inputs) for inputs, _ in batches]
    with frozen_parameters(model):
        for index, names in enumerate(blocks_in_order(model, family)):
            start = time.perf_counter()
            name = block_name(names[0])
            with quantization_disabled(fp_model):
                fp_in, tails, fp_out = capture_block(fp_model, name, batches)
            q_in = capture_block(model, name, batches)[0] if stage.quant_input else fp_in
            fisher = fisher_weights(model, fp_model, name, batches, stage.fisher) if stage.fisher != "off" else None
            size = cfg.batch_size
            data = BlockData(ModuleData(fp_in, fp_out, tails, masks).cut(size), _pieces(q_in, size),
                             None if fisher is None else _pieces(fisher, size))
            generator = torch.Generator(device=device).manual_seed(cfg.seed * 100_003 + index)
            linears = [model.get_submodule(n) for n in names]
            rtn_mse, mse = reconstruct_block(model.get_submodule(name), linears, data, cfg, stage, generator)
            records.append(BlockRecord(name, label, rtn_mse, mse, time.perf_counter() - start))
    return records


def fp_copy(model: nn.Module) -> nn.Module:
    """A copy of the prepared model before any rounding: the FP reference (run it under quantization_disabled)."""
    return copy.deepcopy(model)


__all__ = [
    "BlockRecord", "ReconConfig", "SoftRounding", "Stage", "block_mse", "capture_block", "fisher_weights", "fp_copy",
    "mixed_input", "quantization_dropped", "reconstruct_block", "reconstruct_model", "search_row_scale",
]
