"""Range observers (FQ-ViT's calibrator set): minmax, ema, percentile, omse.

An observer sees tensors during calibration and turns what it saw into a scale and
zero point for a given bit width. Per-channel statistics reduce every axis but `axis`;
`axis=None` is per-tensor.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from arnq.quant.fake_quant import calc_qparams, fake_quantize, quant_range

RESERVOIR_SIZE = 1 << 20  # values kept for search-based observers (percentile auto, omse)


def _reduce_minmax(x: torch.Tensor, axis: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    x = x.detach().float()
    if axis is None:
        return x.min(), x.max()
    flat = x.transpose(0, axis).reshape(x.shape[axis], -1)  # (C, rest)
    return flat.min(dim=1).values, flat.max(dim=1).values


class Observer:
    """Accumulates range statistics; `qparams()` gives (scale, zero_point)."""

    per_channel_ok = True

    def __init__(self, bits: int, symmetric: bool, axis: int | None = None) -> None:
        if axis is not None and not self.per_channel_ok:
            raise ValueError(f"observer '{type(self).__name__}' is per-tensor only; use minmax or ema per channel")
        self.bits, self.symmetric, self.axis = bits, symmetric, axis
        self.min_val: torch.Tensor | None = None
        self.max_val: torch.Tensor | None = None
        self.batches = 0

    @property
    def ready(self) -> bool:
        return self.min_val is not None

    def update(self, x: torch.Tensor) -> None:
        """Fold one batch of values into the statistics."""
        if x.numel() == 0:
            return
        self._update(x.detach())
        self.batches += 1

    def _update(self, x: torch.Tensor) -> None:
        cur_min, cur_max = _reduce_minmax(x, self.axis)
        if self.min_val is None:
            self.min_val, self.max_val = cur_min, cur_max
        else:
            self.min_val = torch.minimum(self.min_val, cur_min)
            self.max_val = torch.maximum(self.max_val, cur_max)

    def range(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The calibrated (min, max) the quantizer will cover."""
        if self.min_val is None:
            raise RuntimeError("observer has seen no data: run calibration batches through the model first")
        return self.min_val, self.max_val

    def qparams(self) -> tuple[torch.Tensor, torch.Tensor]:
        lo, hi = self.range()
        return calc_qparams(lo, hi, self.bits, self.symmetric)


class MinMaxObserver(Observer):
    """Running min and max over all calibration batches."""


class EMAObserver(Observer):
    """min/max <- min/max + sigma * (batch - running), as FQ-ViT's EMA observer."""

    def __init__(self, bits: int, symmetric: bool, axis: int | None = None, sigma: float = 0.01) -> None:
        super().__init__(bits, symmetric, axis)
        self.sigma = sigma

    def _update(self, x: torch.Tensor) -> None:
        cur_min, cur_max = _reduce_minmax(x, self.axis)
        if self.min_val is None:
            self.min_val, self.max_val = cur_min, cur_max
        else:
            self.min_val = self.min_val + self.sigma * (cur_min - self.min_val)
            self.max_val = self.max_val + self.sigma * (cur_max - self.max_val)


def keep_sample(pool: torch.Tensor | None, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Add x's values to a bounded, deterministic sample (at most RESERVOIR_SIZE values, on the CPU)."""
    flat = x.detach().float().flatten().cpu()
    pool = flat if pool is None else torch.cat([pool, flat])
    if pool.numel() > RESERVOIR_SIZE:
        pool = pool[torch.randperm(pool.numel(), generator=gen)[:RESERVOIR_SIZE]]
    return pool


class _ReservoirObserver(Observer):
    """Keeps a bounded, deterministic sample of the values it saw, for range searches."""

    per_channel_ok = False

    def __init__(self, bits: int, symmetric: bool, axis: int | None = None) -> None:
        super().__init__(bits, symmetric, axis)
        self._samples: torch.Tensor | None = None
        self._gen = torch.Generator().manual_seed(0)

    def _keep(self, x: torch.Tensor) -> None:
        self._samples = keep_sample(self._samples, x, self._gen)

    def _l2_best(self, candidates: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
        """The (min, max) candidate whose quantization of the kept values has the least L2 error."""
        values = self._samples
        qmin, qmax = quant_range(self.bits, self.symmetric)
        best, best_err = candidates[0], float("inf")
        for lo, hi in candidates:
            scale, zp = calc_qparams(lo.cpu(), hi.cpu(), self.bits, self.symmetric)
            err = float((fake_quantize(values, scale, zp, qmin, qmax) - values).pow(2).mean())
            if err < best_err:
                best, best_err = (lo, hi), err
        return best


def _kth(values: torch.Tensor, q: float) -> torch.Tensor:
    """The k-th smallest value for k = round(q * n); extreme quantiles use a partial top-k (no full sort)."""
    n = values.numel()
    k = min(max(int(round(q * n)), 1), n)
    tail = min(k, n - k + 1)
    if tail <= 4096:
        largest = k > n // 2
        return values.topk(tail, largest=largest, sorted=True).values[-1]
    return values.kthvalue(k).values


class PercentileObserver(_ReservoirObserver):
    """Per-batch (pct, 1-pct) quantiles smoothed by EMA (FQ-ViT); `pct='auto'` picks
    among 0.999/0.9999/0.99999 by L2 error (RepQ-ViT)."""

    AUTO_CANDIDATES = (0.999, 0.9999, 0.99999)

    def __init__(
        self, bits: int, symmetric: bool, axis: int | None = None, pct: float | str = 0.99999, sigma: float = 0.01
    ) -> None:
        super().__init__(bits, symmetric, axis)
        if pct != "auto" and not (0.5 < float(pct) <= 1.0):
            raise ValueError(f"percentile pct={pct!r} must be in (0.5, 1] or 'auto'")
        self.pct, self.sigma = pct, sigma

    def _update(self, x: torch.Tensor) -> None:
        if self.pct == "auto":
            self._keep(x)
            super_min, super_max = _reduce_minmax(x, None)
            self.min_val = super_min if self.min_val is None else torch.minimum(self.min_val, super_min)
            self.max_val = super_max if self.max_val is None else torch.maximum(self.max_val, super_max)
            return
        flat = x.float().flatten()
        cur_max, cur_min = _kth(flat, float(self.pct)), _kth(flat, 1.0 - float(self.pct))
        if self.min_val is None:
            self.min_val, self.max_val = cur_min, cur_max
        else:
            self.min_val = self.min_val + self.sigma * (cur_min - self.min_val)
            self.max_val = self.max_val + self.sigma * (cur_max - self.max_val)

    def range(self) -> tuple[torch.Tensor, torch.Tensor]:
        lo, hi = super().range()
        if self.pct != "auto":
            return lo, hi
        values = self._samples
        candidates = [(_kth(values, 1.0 - p), _kth(values, p)) for p in self.AUTO_CANDIDATES]
        return self._l2_best(candidates)


class OMSEObserver(_ReservoirObserver):
    """Shrink the min-max range by (1 - 0.01 i), i = 0..89, keep the least-L2 one (FQ-ViT OMSE).

    Candidates are scored on a deterministic sample of every calibration batch (at most
    2^20 values); FQ-ViT scores them on the last batch (docs/ptq.md#calibrators).
    """

    STEPS = 90

    def _update(self, x: torch.Tensor) -> None:
        super()._update(x)
        self._keep(x)

    def range(self) -> tuple[torch.Tensor, torch.Tensor]:
        lo, hi = super().range()
        candidates = [(lo * (1 - 0.01 * i), hi * (1 - 0.01 * i)) for i in range(self.STEPS)]
        return self._l2_best(candidates)


OBSERVERS: dict[str, Callable[..., Observer]] = {
    "minmax": MinMaxObserver,
    "ema": EMAObserver,
    "percentile": PercentileObserver,
    "omse": OMSEObserver,
}
