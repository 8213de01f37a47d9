"""Per-site activation statistics (range over sigma, kurtosis) of a model on a few batches.

Statistics are pooled over batches exactly: each site accumulates its count, absmax
and the float64 sums of (x - s), (x - s)^2, (x - s)^3, (x - s)^4 about a shift s (the
first batch's mean, which keeps the sums well conditioned), and the moments are
formed at the end. Padding tokens (attention_mask == 0) are left out.

`max_over_sigma` is absmax / std, i.e. max|A| / sigma (the ratio that sets how many
quantization levels a min-max range wastes on outliers).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch
from torch import nn

from arnq.arms.sites import SiteFn, find_sites, observe, site_kind
from arnq.batch import forward_logits, move_to, token_mask
from arnq.quant.quantizer import valid_values

STAT_FIELDS = ("max_over_sigma", "kurtosis", "absmax", "std", "mean")
LINEAR_KIND = "linear_in"


class MomentAccumulator:
    """Pooled count, absmax and shifted float64 power sums of a stream of tensors."""

    def __init__(self) -> None:
        self.n = 0
        self.shift: torch.Tensor | None = None
        self.sums: torch.Tensor | None = None  # sums of d, d^2, d^3, d^4 with d = x - shift
        self.absmax: torch.Tensor | None = None

    def update(self, x: torch.Tensor) -> None:
        """Add every element of `x`."""
        x = x.detach().flatten().double()
        if x.numel() == 0:
            return
        if self.shift is None:
            self.shift = x.mean()
            self.sums = x.new_zeros(4)
            self.absmax = x.new_zeros(())
        d = x - self.shift
        d2 = d * d
        self.sums += torch.stack([d.sum(), d2.sum(), (d2 * d).sum(), (d2 * d2).sum()])
        self.absmax = torch.maximum(self.absmax, x.abs().max())
        self.n += x.numel()

    def result(self) -> dict[str, float]:
        """max_over_sigma, kurtosis, absmax, std and mean of everything seen."""
        if self.n == 0:
            raise ValueError("no values were accumulated")
        m1, m2, m3, m4 = (self.sums / self.n).tolist()  # raw moments of d about the shift
        var = max(m2 - m1**2, 0.0)
        c4 = m4 - 4 * m1 * m3 + 6 * m1**2 * m2 - 3 * m1**4
        std, absmax = math.sqrt(var), float(self.absmax)
        return {
            "max_over_sigma": absmax / std if std > 0 else math.inf,
            "kurtosis": c4 / var**2 if var > 0 else math.nan,
            "absmax": absmax,
            "std": std,
            "mean": float(self.shift) + m1,
        }


HookFactory = Callable[[SiteFn], contextlib.AbstractContextManager]


def _pooled_stats(
    model: nn.Module,
    batches: Iterable[Any],
    hooks: HookFactory,
    max_batches: int | None,
    device: torch.device | str | None,
) -> dict[str, dict[str, float]]:
    """Run the batches in eval mode with `hooks` feeding masked values to per-name accumulators."""
    device = device if device is not None else next(model.parameters()).device
    accs: dict[str, MomentAccumulator] = {}
    batch_mask: torch.Tensor | None = None  # read by record() at hook time

    def record(name: str, x: torch.Tensor) -> None:
        accs.setdefault(name, MomentAccumulator()).update(valid_values(x, batch_mask))

    was_training = model.training
    model.eval()
    seen = 0
    try:
        with torch.no_grad(), hooks(record):
            for i, (inputs, _labels) in enumerate(batches):
                if max_batches is not None and i >= max_batches:
                    break
                inputs = move_to(inputs, device)
                batch_mask = token_mask(inputs)
                forward_logits(model, inputs)
                seen += 1
    finally:
        model.train(was_training)
    if seen == 0:
        raise ValueError("activation statistics got no batches: give at least one (inputs, labels) batch")
    return {name: acc.result() for name, acc in accs.items()}


def activation_stats(
    model: nn.Module,
    batches: Iterable[Any],
    kinds: Iterable[str] | None = None,
    max_batches: int | None = None,
    device: torch.device | str | None = None,
) -> dict[str, dict[str, float]]:
    """Pooled statistics of every activation site (default: all kinds the family has), by site name."""
    sites = find_sites(model, kinds)
    return _pooled_stats(model, batches, lambda fn: observe(model, sites, fn), max_batches, device)


@contextlib.contextmanager
def _linear_input_hooks(model: nn.Module, fn: SiteFn) -> Iterator[None]:
    """Forward pre-hooks reporting the input of every nn.Linear (QuantLinear included)."""
    handles = []
    try:
        for name, module in model.named_modules():
            if isinstance(module, nn.Linear):
                site = f"{LINEAR_KIND}/{name}"
                handles.append(module.register_forward_pre_hook(lambda _m, args, site=site: fn(site, args[0])))
        yield
    finally:
        for handle in handles:
            handle.remove()


def linear_input_stats(
    model: nn.Module,
    batches: Iterable[Any],
    max_batches: int | None = None,
    device: torch.device | str | None = None,
) -> dict[str, dict[str, float]]:
    """Pooled statistics of every Linear's input (where PTQ sets ranges), keyed "linear_in/<module>"."""
    return _pooled_stats(model, batches, lambda fn: _linear_input_hooks(model, fn), max_batches, device)


def summarize(stats: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """Per site kind: number of sites and the mean and max of max_over_sigma and kurtosis."""
    by_kind: dict[str, list[dict[str, float]]] = {}
    for name, row in stats.items():
        by_kind.setdefault(site_kind(name), []).append(row)
    summary = {}
    for kind, rows in by_kind.items():
        summary[kind] = {"n_sites": len(rows)}
        for stat in ("max_over_sigma", "kurtosis"):
            values = [row[stat] for row in rows]
            summary[kind][f"{stat}_mean"] = sum(values) / len(values)
            summary[kind][f"{stat}_max"] = max(values)
    return summary
