"""Calibrator PTQ (FQ-ViT's baseline set): minmax, ema, percentile, omse.

Weights: per-output-channel symmetric min-max. Activations: per-tensor asymmetric
static ranges from the named observer (or per-token dynamic). Calibration: 1,000
train examples by default, as in FQ-ViT (10 batches of 100 images). The observers and
their deviations from FQ-ViT: docs/ptq.md#calibrators.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from torch import nn

from arnq.ptq.base import Calibration, PTQConfig, PTQMethod, register_ptq
from arnq.quant import QuantConfig, calibrate, prepare
from arnq.quant.api import DEFAULT_POINTS, POINTS


@dataclass(frozen=True)
class CalibratorConfig(PTQConfig):
    """Options shared by the observer-based calibrators; `observer` names the activation range observer."""

    a_granularity: str = "tensor"  # "tensor" (static, calibrated) or "token" (dynamic)
    points: tuple[str, ...] = DEFAULT_POINTS
    edge_bits: int | None = 8

    observer: ClassVar[str] = ""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.a_granularity not in ("tensor", "token"):
            raise ValueError(f"a_granularity={self.a_granularity!r}: choose tensor or token")
        bad = [p for p in self.points if p not in POINTS]
        if bad:
            raise ValueError(f"points {bad}: unknown; valid points are {', '.join(POINTS)}")

    def observer_params(self) -> dict[str, Any]:
        return {}

    def quant_scheme(self) -> QuantConfig:
        return QuantConfig(w_bits=self.w_bits, a_bits=self.a_bits, edge_bits=self.edge_bits,
                           a_observer=self.observer, a_observer_params=self.observer_params(),
                           a_granularity=self.a_granularity, points=self.points)


@dataclass(frozen=True)
class MinMaxConfig(CalibratorConfig):
    observer: ClassVar[str] = "minmax"


@dataclass(frozen=True)
class OMSEConfig(CalibratorConfig):
    observer: ClassVar[str] = "omse"


@dataclass(frozen=True)
class EMAConfig(CalibratorConfig):
    sigma: float = 0.01

    observer: ClassVar[str] = "ema"

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

    observer: ClassVar[str] = "percentile"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.pct != "auto" and not (isinstance(self.pct, (int, float)) and 0.5 < self.pct <= 1):
            raise ValueError(f"pct={self.pct!r}: use a quantile in (0.5, 1], e.g. 0.99999, or 'auto'")

    def observer_params(self) -> dict[str, Any]:
        return {"pct": self.pct, "sigma": self.sigma}


class _Calibrator(PTQMethod):
    quantizes = "W+A"
    granularity = "W per-channel sym; A per-tensor asym static (or per-token)"
    default_calib_size = 1000
    paper = "FQ-ViT (Lin et al., IJCAI 2022) baseline observers"
    holds_batches = False

    def _quantize(self, model: nn.Module, cfg: CalibratorConfig, calib: Calibration) -> None:
        prepare(model, cfg.quant_scheme(), calib.family)
        calibrate(model, calib.batches, device=calib.device)


@register_ptq
class MinMax(_Calibrator):
    name = "minmax"
    config_cls = MinMaxConfig
    description = "running min/max of activations"


@register_ptq
class EMA(_Calibrator):
    name = "ema"
    config_cls = EMAConfig
    description = "min/max smoothed by an exponential moving average (sigma 0.01)"


@register_ptq
class Percentile(_Calibrator):
    name = "percentile"
    config_cls = PercentileConfig
    description = "0.99999/0.00001 quantiles per batch, EMA-smoothed ('auto': RepQ-ViT's L2 pick)"


@register_ptq
class OMSE(_Calibrator):
    name = "omse"
    config_cls = OMSEConfig
    description = "min-max range shrunk by 1-0.01i (i<90), least-L2 candidate"


#: the calibrator names in the order a CLI lists them
CALIBRATORS = tuple(cls.name for cls in (MinMax, EMA, Percentile, OMSE))
