"""MREM: module-wise reconstruction error minimization (weights, steps, teacher forcing).

Bai, Hou, Shang, Jiang, King, Lyu, "Towards Efficient Post-training Quantization of
Pre-trained Language Models" (NeurIPS 2022, arXiv 2109.15082). No public code; the
recipe follows the paper.

The transformer's blocks are split into `n_modules` contiguous modules. Every point starts
from min-max calibration; then each module minimises the MSE between its quantized output and
the FP module's output on the calibration set (padding tokens excluded), training the module's
weights (Adam, `lr`) and its quantization steps (LSQ-style log gains, `lr_step`). The module's
input is teacher-forced: lambda_t * f_{n-1} + (1 - lambda_t) * f^_{n-1}, with f the FP output of
the previous module, f^ its quantized output and lambda_t = max(1 - t / T0, 0)
(`teacher_steps` = T0). Sequential (`parallel=False`): modules in order, each on the output of
the already reconstructed ones. Parallel (`parallel=True`, MREM-P): one process per module,
all training at once, module n fed module n-1's live quantized output through a queue.

The defaults are a CPU budget, with the weights frozen (`lr=0`): docs/ptq.md#mrem.
"""

from __future__ import annotations

import multiprocessing
import queue
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from arnq.batch import token_mask
from arnq.ptq.base import Calibration, PTQConfig, PTQMethod, register_ptq
from arnq.ptq.common import Batch, rows, run_hooked
from arnq.quant import calibrate, convert, prepare
from arnq.quant.api import _register_hf_attention, quantization_disabled
from arnq.quant.quantizer import FakeQuantizer

WORKER_POLL_S = 1.0


def block_units(model: nn.Module, family: str) -> list[str]:
    """The sequential units a module is cut from: ViT blocks, Swin stages, BERT encoder layers."""
    if family == "vit":
        return [f"blocks.{i}" for i in range(len(model.blocks))]
    if family == "swin":
        return [f"layers.{i}" for i in range(len(model.layers))]
    if family == "bert":
        encoder = next(n for n, m in model.named_modules() if n.endswith("encoder.layer"))
        return [f"{encoder}.{i}" for i in range(len(model.get_submodule(encoder)))]
    raise ValueError(f"no block units for model family '{family}'")


def split_modules(units: Sequence[str], n_modules: int) -> list[list[str]]:
    """`units` cut into min(n_modules, len(units)) contiguous modules of near-equal size."""
    n = min(n_modules, len(units))
    bounds = [round(i * len(units) / n) for i in range(n + 1)]
    return [list(units[bounds[i]:bounds[i + 1]]) for i in range(n)]


@dataclass
class ModuleData:
    """What one module trains on, per calibration batch."""

    fp_in: list[torch.Tensor]  # FP input (output of the FP previous module)
    fp_out: list[torch.Tensor]  # FP output target
    tails: list[tuple[tuple, dict]]  # the first unit's other positional arguments and keyword arguments
    masks: list[torch.Tensor | None]  # real-token masks (None for images)
    q_in: list[torch.Tensor] | None = None  # quantized input when it is fixed (sequential, or the first module)

    def cut(self, size: int) -> ModuleData:
        """The same data in steps of at most `size` examples (every per-example tensor sliced alike)."""
        tails = [(tuple(_cut(a, size, len(x)) for a in args), {k: _cut(v, size, len(x)) for k, v in kw.items()})
                 for x, (args, kw) in zip(self.fp_in, self.tails, strict=True)]
        out = ModuleData([], [], [], [])
        for b, x in enumerate(self.fp_in):
            pieces = range(0, x.shape[0], size)
            out.fp_in += [x[i:i + size] for i in pieces]
            out.fp_out += [self.fp_out[b][i:i + size] for i in pieces]
            out.masks += [None if self.masks[b] is None else self.masks[b][i:i + size] for i in pieces]
            args, kw = tails[b]
            out.tails += [(tuple(a(i) for a in args), {k: v(i) for k, v in kw.items()}) for i in pieces]
        return out


def _cut(value: Any, size: int, batch: int) -> Callable[[int], Any]:
    """value -> (offset -> the slice of `size` examples at offset) for batch-first tensors; others as they are."""
    if torch.is_tensor(value) and value.dim() >= 1 and value.shape[0] == batch:
        return lambda i: value[i:i + size]
    return lambda _i: value


def quantized_inputs(model: nn.Module, units: Sequence[str], batches: Sequence[Batch], size: int) -> list[torch.Tensor]:
    """The module's input in the model as it is now (earlier modules quantized), in steps of `size` examples."""
    calls = capture_modules(model, [units], batches, outputs=False)[0][0]
    return [x[i:i + size] for x in (args[0] for args, _ in calls) for i in range(0, x.shape[0], size)]


@torch.no_grad()
def capture_modules(model: nn.Module, modules: Sequence[Sequence[str]], batches: Sequence[Batch],
                    outputs: bool = True) -> list[tuple[list[tuple[tuple, dict]], list[torch.Tensor]]]:
    """Per module: the first unit's (args, kwargs) and (optionally) the last unit's output, per batch."""
    calls: list[list[tuple[tuple, dict]]] = [[] for _ in modules]
    outs: list[list[torch.Tensor]] = [[] for _ in modules]
    handles = []
    for i, units in enumerate(modules):
        def pre(_m, args, kwargs, i=i):
            calls[i].append((tuple(a.detach() if torch.is_tensor(a) else a for a in args), dict(kwargs)))

        handles.append(model.get_submodule(units[0]).register_forward_pre_hook(pre, with_kwargs=True))
        if outputs:
            def post(_m, _args, out, i=i):
                outs[i].append(_hidden(out).detach())

            handles.append(model.get_submodule(units[-1]).register_forward_hook(post))
    run_hooked(model, batches, handles)
    return list(zip(calls, outs, strict=True))


def _hidden(out: Any) -> torch.Tensor:
    return out[0] if isinstance(out, tuple) else out


def run_units(units: Sequence[nn.Module], x: torch.Tensor, tail: tuple[tuple, dict]) -> torch.Tensor:
    args, kwargs = tail
    for unit in units:
        x = _hidden(unit(x, *args, **kwargs))
    return x


class LearnedSteps:
    """LSQ-style learnable steps: each live quantizer's scale becomes base * exp(gain) with a trainable gain."""

    def __init__(self, module: nn.Module) -> None:
        self.entries: list[tuple[str, FakeQuantizer, torch.Tensor, nn.Parameter, Any]] = []
        for name, q in module.named_modules():
            if isinstance(q, FakeQuantizer) and q.quantizing and not q.dynamic and q.scale is not None:
                base = q.scale.detach().clone()
                gain = nn.Parameter(torch.zeros_like(base))
                handle = q.register_forward_pre_hook(lambda m, _args, b=base, g=gain: setattr(m, "scale", b * g.exp()))
                self.entries.append((name, q, base, gain, handle))

    @property
    def gains(self) -> list[nn.Parameter]:
        return [entry[3] for entry in self.entries]

    def finish(self) -> dict[str, torch.Tensor]:
        """Fix the learned scales in the quantizers; returns them by quantizer name."""
        scales = {}
        for name, q, base, gain, handle in self.entries:
            handle.remove()
            q.scale = (base * gain.detach().exp()).detach()
            scales[name] = q.scale
        return scales


def teacher_weight(step: int, teacher_steps: int) -> float:
    """lambda_t = max(1 - t / T0, 0); 0 throughout when T0 is 0."""
    return max(1.0 - step / teacher_steps, 0.0) if teacher_steps > 0 else 0.0


def train_module(units: nn.ModuleList, data: ModuleData, cfg: MREMConfig,
                 quantized_input: Callable[[int, int], torch.Tensor],
                 emit: Callable[[torch.Tensor], None] | None = None) -> list[float]:
    """Reconstruct one module in place; returns the loss per step.

    `quantized_input(step, batch)` gives f^_{n-1} for that step; `emit` receives this module's
    quantized output of each step (the parallel pipeline's hand-off).
    """
    steps = LearnedSteps(units)
    weights = [p for p in units.parameters()]
    flags = [p.requires_grad for p in weights]
    for p in weights:
        p.requires_grad_(True)
    opt = torch.optim.Adam([{"params": weights, "lr": cfg.lr}, {"params": steps.gains, "lr": cfg.lr_step}])
    units.eval()  # no dropout; gradients still flow
    losses = []
    try:
        with torch.enable_grad():
            for step in range(cfg.iters):
                b = step % len(data.fp_in)
                lam = teacher_weight(step, cfg.teacher_steps)
                x = quantized_input(step, b)
                if lam > 0:
                    x = lam * data.fp_in[b] + (1 - lam) * x
                out = run_units(units, x, data.tails[b])
                loss = rows(out - data.fp_out[b], data.masks[b]).float().pow(2).mean()
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"MREM loss is {float(loss)} at step {step}; lower lr={cfg.lr}")
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                losses.append(float(loss.detach()))
                if emit is not None:
                    emit(out.detach())
    finally:
        steps.finish()
        for p, flag in zip(weights, flags, strict=True):
            p.requires_grad_(flag)
    return losses


def _worker(index: int, units: nn.ModuleList, data: ModuleData, cfg: MREMConfig, family: str, threads: int,
            inbox: Any, outbox: Any, results: Any) -> None:
    """One module of the parallel pipeline, in its own process."""
    try:
        torch.set_num_threads(threads)
        if family == "bert":
            _register_hf_attention()  # the attention implementation the prepared layers name
        if inbox is None:
            def source(_step: int, b: int) -> torch.Tensor:
                return data.q_in[b]
        else:
            def source(_step: int, _b: int) -> torch.Tensor:
                return torch.from_numpy(inbox.get())
        emit = None if outbox is None else (lambda out: outbox.put(out.cpu().numpy()))
        losses = train_module(units, data, cfg, source, emit)
        scales = {n: q.scale.cpu().numpy() for n, q in units.named_modules() if isinstance(q, FakeQuantizer)
                  and q.scale is not None}
        params = {n: p.detach().cpu().numpy() for n, p in units.named_parameters()}
        results.put((index, "ok", {"params": params, "scales": scales, "losses": losses}))
    except BaseException:  # noqa: BLE001 - reported to the parent with the traceback
        results.put((index, "error", traceback.format_exc()))


def _load(units: nn.ModuleList, state: dict[str, Any]) -> None:
    with torch.no_grad():
        for name, p in units.named_parameters():
            p.copy_(torch.from_numpy(state["params"][name]).to(p.device, p.dtype))
        for name, q in units.named_modules():
            if name in state["scales"]:
                q.scale = torch.from_numpy(state["scales"][name]).to(q.scale.device)


def run_parallel(groups: Sequence[nn.ModuleList], data: Sequence[ModuleData], cfg: MREMConfig,
                 family: str) -> list[list[float]]:
    """Train every module at once, one spawned process each, chained by queues; loads the results back."""
    ctx = multiprocessing.get_context("spawn")
    n = len(groups)
    links = [ctx.Queue(maxsize=cfg.queue_size) for _ in range(n - 1)]
    results = ctx.Queue()
    threads = max(1, torch.get_num_threads() // n)
    procs = [ctx.Process(target=_worker, daemon=True,
                         args=(i, groups[i], data[i], cfg, family, threads, links[i - 1] if i else None,
                               links[i] if i < n - 1 else None, results)) for i in range(n)]
    for p in procs:
        p.start()
    states: dict[int, dict[str, Any]] = {}
    try:
        while len(states) < n:
            try:
                index, status, payload = results.get(timeout=WORKER_POLL_S)
            except queue.Empty:
                dead = [i for i, p in enumerate(procs) if i not in states and not p.is_alive()]
                if dead:
                    try:
                        index, status, payload = results.get(timeout=5 * WORKER_POLL_S)
                    except queue.Empty:
                        code = procs[dead[0]].exitcode
                        raise RuntimeError(f"MREM module {dead[0]}'s worker process died (exit code {code}) "
                                           "without a result; run with parallel: false to see the error") from None
                else:
                    continue
            if status == "error":
                raise RuntimeError(f"MREM module {index} failed in its worker process:\n{payload}")
            states[index] = payload
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
            p.join(timeout=10)
    for i, group in enumerate(groups):
        _load(group, states[i])
    return [states[i]["losses"] for i in range(n)]


@dataclass(frozen=True)
class MREMConfig(PTQConfig):
    n_modules: int = 4
    iters: int = 200
    teacher_steps: int = 100  # T0 of lambda_t = max(1 - t/T0, 0); 0 = no teacher forcing
    batch_size: int = 16  # examples per step (calibration batches are cut to this size)
    lr: float = 0.0  # weights' Adam lr; 0: weights frozen, steps only (why: docs/ptq.md#mrem)
    lr_step: float = 3e-3
    parallel: bool = False
    queue_size: int = 4

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("n_modules", "iters", "queue_size", "batch_size"):
            value = getattr(self, name)
            if not (isinstance(value, int) and value >= 1):
                raise ValueError(f"{name}={value!r}: use a positive integer")
        if not (isinstance(self.teacher_steps, int) and self.teacher_steps >= 0):
            raise ValueError(f"teacher_steps={self.teacher_steps!r}: use a non-negative integer (0 = no teacher forcing)")
        if self.lr < 0 or self.lr_step < 0:
            raise ValueError(f"lr={self.lr!r}, lr_step={self.lr_step!r}: use non-negative learning rates")


@register_ptq
class MREM(PTQMethod):
    name = "mrem"
    config_cls = MREMConfig
    granularity = ("W per output row, symmetric; A per tensor; steps and weights learned per module "
                   "(output MSE, teacher forcing)")
    default_calib_size = 1024
    #: PTQ-aware ARNQ's repeated in-training runs: cheaper search (cost and effect: bench/README.md §8)
    shadow_params = {"iters": 50, "teacher_steps": 25}
    paper = "MREM (Bai et al., NeurIPS 2022)"
    description = "module-wise reconstruction of weights and LSQ steps with teacher forcing; sequential or parallel"
    smoke_params = {"iters": 20, "teacher_steps": 10, "n_modules": 2}

    def _quantize(self, model: nn.Module, cfg: MREMConfig, calib: Calibration) -> None:
        family, batches, device = calib.family, calib.batches, calib.device
        prepare(model, cfg.quant_scheme(), family)
        calibrate(model, batches, device=device)  # min-max starting steps
        convert(model)
        modules = split_modules(block_units(model, family), cfg.n_modules)
        with quantization_disabled(model):
            fp = capture_modules(model, modules, batches)
        masks = [token_mask(inputs) for inputs, _ in batches]
        data = [ModuleData([a[0] for a, _ in calls], outs, [(a[1:], kw) for a, kw in calls], masks).cut(cfg.batch_size)
                for calls, outs in fp]
        groups = [nn.ModuleList([model.get_submodule(u) for u in units]) for units in modules]
        if cfg.parallel and len(groups) > 1:
            data[0].q_in = quantized_inputs(model, modules[0], batches, cfg.batch_size)
            losses = run_parallel(groups, data, cfg, family)
        else:
            losses = []
            for i, group in enumerate(groups):  # earlier modules are reconstructed when module i's input is taken
                data[i].q_in = quantized_inputs(model, modules[i], batches, cfg.batch_size)
                losses.append(train_module(group, data[i], cfg, lambda _s, b, d=data[i]: d.q_in[b]))
        model.arnq_mrem_losses = [(ls[0], ls[-1]) for ls in losses]


__all__ = ["MREM", "MREMConfig", "block_units", "split_modules", "teacher_weight", "train_module"]
