"""FakeQuantizer: one quantization point, switched between FP, observing and quantizing."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from arnq.quant.fake_quant import broadcast_shape, calc_qparams, fake_quantize, quant_range
from arnq.quant.observers import OBSERVERS, Observer

GRANULARITIES = ("tensor", "channel", "token")

_TOKEN_MASK: ContextVar[torch.Tensor | None] = ContextVar("arnq_token_mask", default=None)


@contextlib.contextmanager
def token_mask_context(mask: torch.Tensor | None) -> Iterator[None]:
    """Mark padding positions so observers ignore them (a (B, T) bool mask of real tokens)."""
    token = _TOKEN_MASK.set(mask)
    try:
        yield
    finally:
        _TOKEN_MASK.reset(token)


def valid_values(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Drop padded tokens from (B, T, ...) or (B, H, T, ...) activations; other shapes pass through."""
    if mask is None or x.dim() < 3 or x.shape[0] != mask.shape[0]:
        return x
    if x.shape[1] == mask.shape[1]:
        return x[mask]  # (N_valid, ...)
    if x.dim() == 4 and x.shape[2] == mask.shape[1]:
        return x.transpose(1, 2)[mask]  # (B, T, H, D) -> (N_valid, H, D)
    return x


@dataclass(frozen=True)
class QuantSpec:
    """How one point is quantized: bits, symmetry, granularity and the range observer."""

    bits: int = 8
    symmetric: bool = False
    granularity: str = "tensor"
    axis: int = -1  # channel axis for granularity="channel"
    observer: str = "minmax"
    observer_params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not (isinstance(self.bits, int) and 2 <= self.bits <= 16):
            raise ValueError(f"bits={self.bits!r}: use an integer from 2 to 16")
        if self.granularity not in GRANULARITIES:
            raise ValueError(f"granularity={self.granularity!r}: choose one of {', '.join(GRANULARITIES)}")
        if self.observer not in OBSERVERS:
            raise ValueError(f"observer={self.observer!r}: choose one of {', '.join(OBSERVERS)}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class FakeQuantizer(nn.Module):
    """A quantization point. Off by default (identity); `observing` collects ranges,
    `quantizing` applies fake quantization with the calibrated (or per-token dynamic) step."""

    def __init__(self, spec: QuantSpec, point: str) -> None:
        super().__init__()
        self.spec = spec
        self.point = point
        self.observing = False
        self.quantizing = False
        self.observer: Observer | None = None
        self.noise: nn.Module | None = None  # training-time perturbation (ARNQ); never active in eval
        self.qmin, self.qmax = quant_range(spec.bits, spec.symmetric)
        self.register_buffer("scale", None, persistent=False)
        self.register_buffer("zero_point", None, persistent=False)

    @property
    def dynamic(self) -> bool:
        return self.spec.granularity == "token"

    @property
    def calibrated(self) -> bool:
        return self.dynamic or self.scale is not None

    def extra_repr(self) -> str:
        s = self.spec
        state = "quantizing" if self.quantizing else ("observing" if self.observing else "off")
        return f"point={self.point}, bits={s.bits}, sym={s.symmetric}, {s.granularity}, {s.observer}, {state}"

    def start_observing(self) -> None:
        """Begin a fresh calibration pass (no-op for dynamic per-token points)."""
        if self.dynamic:
            return
        axis = self.spec.axis if self.spec.granularity == "channel" else None
        self.observer = OBSERVERS[self.spec.observer](
            self.spec.bits, self.spec.symmetric, axis, **self.spec.observer_params
        )
        self.observing = True

    def finish_observing(self) -> None:
        """Turn what the observer saw into the fixed scale and zero point."""
        self.observing = False
        if self.dynamic or self.observer is None:
            return
        if not self.observer.ready:
            raise RuntimeError(
                f"quantization point {self.point} saw no data during calibration; "
                "check that the calibration batches reach this module"
            )
        scale, zero_point = self.observer.qparams()
        self.set_qparams(scale, zero_point)
        self.observer = None

    def set_qparams(self, scale: torch.Tensor, zero_point: torch.Tensor) -> None:
        device = self.scale.device if self.scale is not None else scale.device
        self.scale = scale.detach().float().to(device)
        self.zero_point = zero_point.detach().float().to(device)

    def observe(self, x: torch.Tensor) -> None:
        """Feed one tensor to the observer without quantizing (used for weights)."""
        self.observer.update(valid_values(x, _TOKEN_MASK.get()))

    def quantize(self, x: torch.Tensor) -> torch.Tensor:
        """Fake-quantize `x` with this point's parameters."""
        if self.dynamic:
            lo = x.detach().amin(dim=-1, keepdim=True)
            hi = x.detach().amax(dim=-1, keepdim=True)
            scale, zp = calc_qparams(lo, hi, self.spec.bits, self.spec.symmetric)
            return fake_quantize(x, scale.to(x.dtype), zp.to(x.dtype), self.qmin, self.qmax)
        if self.scale is None:
            raise RuntimeError(f"quantization point {self.point} is not calibrated: run calibrate() before convert()")
        scale, zp = self.scale, self.zero_point
        if self.spec.granularity == "channel":
            shape = broadcast_shape(x, self.spec.axis)
            scale, zp = scale.reshape(shape), zp.reshape(shape)
        return fake_quantize(x, scale.to(x.dtype), zp.to(x.dtype), self.qmin, self.qmax)

    def quantized_value(self, x: torch.Tensor) -> torch.Tensor:
        """What quantizing `x` at this point gives, in `x`'s own coordinates (noise aside).

        The same as `quantize` for a plain point; a point that transforms its input around
        the quantizer (NoisyQuant's noisy bias) undoes the transform.
        """
        return self.quantize(x)

    @property
    def noisy(self) -> bool:
        """Whether a training-time perturbation is installed and active."""
        return self.noise is not None and self.training

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.noisy:
            x = self.noise(x)
        if self.observing:
            self.observe(x)
        if self.quantizing:
            return self.quantize(x)
        return x


class SectionQuantizer(nn.Module):
    """Quantizes equal chunks of the last dimension separately (the q, k, v of a fused qkv)."""

    def __init__(self, quantizers: list[FakeQuantizer | None]) -> None:
        super().__init__()
        self.parts = nn.ModuleList([q if q is not None else nn.Identity() for q in quantizers])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        live = [q for q in self.parts if isinstance(q, FakeQuantizer)]
        if not any(q.observing or q.quantizing or q.noisy for q in live):
            return x
        chunks = x.chunk(len(self.parts), dim=-1)
        return torch.cat([q(c) for q, c in zip(self.parts, chunks, strict=True)], dim=-1)
