"""Calibrator PTQ (FQ-ViT's baseline set): minmax, ema, percentile, omse.

Weights: per-output-channel symmetric min-max. Activations: per-tensor asymmetric
static ranges from the named observer (or per-token dynamic). Calibration: 1,000
train examples by default, as in FQ-ViT (10 batches of 100 images).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from arnq.ptq.base import PTQConfig, PTQMethod, register_ptq
from arnq.quant import QuantConfig, calibrate, convert, detect_family, prepare
from arnq.quant.api import DEFAULT_POINTS, POINTS


@dataclass(frozen=True)
class CalibratorConfig(PTQConfig):
    """Options shared by the observer-based calibrators."""

    a_granularity: str = "tensor"  # "tensor" (static, calibrated) or "token" (dynamic)
    points: tuple[str, ...] = DEFAULT_POINTS
    edge_bits: int | None = 8

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "points", tuple(self.points))
        if self.a_granularity not in ("tensor", "token"):
            raise ValueError(f"a_granularity={self.a_granularity!r}: choose tensor or token")
        bad = [p for p in self.points if p not in POINTS]
        if bad:
            raise ValueError(f"points {bad}: unknown; valid points are {', '.join(POINTS)}")

    def observer_params(self) -> dict[str, Any]:
        return {}


@dataclass(frozen=True)
class EMAConfig(CalibratorConfig):
    sigma: float = 0.01

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 < self.sigma <= 1:
            raise ValueError(f"sigma={self.sigma!r}: the EMA factor must be in (0, 1]")

    def observer_params(self) -> dict[str, Any]:
        return {"sigma": self.sigma}


@dataclass(frozen=True)
class PercentileConfig(CalibratorConfig):
    pct: float | str = 0.99999  # or "auto": RepQ-ViT's pick among 0.999/0.9999/0.99999 by L2
    sigma: float = 0.01

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.pct != "auto" and not (isinstance(self.pct, (int, float)) and 0.5 < self.pct <= 1):
            raise ValueError(f"pct={self.pct!r}: use a quantile in (0.5, 1], e.g. 0.99999, or 'auto'")

    def observer_params(self) -> dict[str, Any]:
        return {"pct": self.pct, "sigma": self.sigma}


class _Calibrator(PTQMethod):
    observer: str
    quantizes = "W+A"
    granularity = "W per-channel sym; A per-tensor asym static (or per-token)"
    default_calib_size = 1000
    paper = "FQ-ViT (Lin et al., IJCAI 2022) baseline observers"

    def apply(
        self,
        model: nn.Module,
        cfg: CalibratorConfig,
        *,
        w_bits: int,
        a_bits: int,
        calib_batches: Iterable[Any],
        device: torch.device | str = "cpu",
    ) -> nn.Module:
        family = detect_family(model)
        self.check_family(family)
        qcfg = QuantConfig(
            w_bits=w_bits,
            a_bits=a_bits,
            edge_bits=cfg.edge_bits,
            a_observer=self.observer,
            a_observer_params=cfg.observer_params(),
            a_granularity=cfg.a_granularity,
            points=cfg.points,
        )
        prepare(model, qcfg, family)
        calibrate(model, calib_batches, device=device)
        return convert(model)


@register_ptq
class MinMax(_Calibrator):
    name = "minmax"
    observer = "minmax"
    config_cls = CalibratorConfig
    description = "running min/max of activations"


@register_ptq
class EMA(_Calibrator):
    name = "ema"
    observer = "ema"
    config_cls = EMAConfig
    description = "min/max smoothed by an exponential moving average (sigma 0.01)"


@register_ptq
class Percentile(_Calibrator):
    name = "percentile"
    observer = "percentile"
    config_cls = PercentileConfig
    description = "0.99999/0.00001 quantiles per batch, EMA-smoothed ('auto': RepQ-ViT's L2 pick)"


@register_ptq
class OMSE(_Calibrator):
    name = "omse"
    observer = "omse"
    config_cls = CalibratorConfig
    description = "min-max range shrunk by 1-0.01i (i<90), least-L2 candidate"
