"""Typed PTQ: a frozen config per method, a handler found by the config's type, `quantize_`.

A config carries everything that defines the quantization (bits, calibration size, the
method's own knobs) and says which uniform quantizers the method installs
(`quant_scheme`), so a fine-tuning arm can prepare for the same quantizer. A handler
holds the behaviour: `PTQMethod.apply` runs the shared prologue (family check,
calibration batches, eval mode) and epilogue (switch every point on), and each method
fills in one hook, `_quantize`.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from arnq.ptq.common import Batch, materialize
from arnq.quant import QuantConfig, convert, detect_family
from arnq.quant.api import ACT_FP_BITS, FAMILIES, check_bits
from arnq.registry import HandlerRegistry
from arnq.scoped import seeded

BITS_RE = re.compile(r"^W(\d+)A(\d+)$")


def parse_bits(text: str) -> tuple[int, int]:
    """'W4A8' -> (4, 8). Weights 2..8 bits; activations 2..8, or 16 for FP activations."""
    match = BITS_RE.match(str(text).strip().upper())
    if not match:
        raise ValueError(
            f"bits {text!r} is malformed: write W<weight bits>A<activation bits>, e.g. W8A8, W4A4, W4A16"
        )
    w_bits, a_bits = int(match.group(1)), int(match.group(2))
    check_bits(w_bits, a_bits, f"bits {text!r}: ")
    return w_bits, a_bits


def format_bits(w_bits: int, a_bits: int) -> str:
    return f"W{w_bits}A{a_bits}"


@dataclass(frozen=True)
class PTQConfig:
    """Fields shared by every PTQ method; each method's config subclass adds its own knobs.

    `method` is the registry name of the handler (set by `register_ptq`). `to_dict` /
    `ptq_config_from_dict` round-trip exactly through JSON.
    """

    w_bits: int = 8
    a_bits: int = 8
    calib_size: int | None = None  # None: the method's paper default (`PTQMethod.default_calib_size`)

    method: ClassVar[str] = ""

    def __post_init__(self) -> None:
        check_bits(self.w_bits, self.a_bits, f"{type(self).__name__}: ")
        if self.calib_size is not None and (
            isinstance(self.calib_size, bool) or not isinstance(self.calib_size, int) or self.calib_size < 1
        ):
            raise ValueError(f"calib_size={self.calib_size!r}: use a positive integer (or omit for the default)")
        for f in dataclasses.fields(self):  # lists from YAML/JSON are stored as tuples (hashable, frozen)
            if isinstance(getattr(self, f.name), list):
                object.__setattr__(self, f.name, tuple(getattr(self, f.name)))

    @property
    def bits(self) -> str:
        return format_bits(self.w_bits, self.a_bits)

    @property
    def quantizes_activations(self) -> bool:
        return self.a_bits < ACT_FP_BITS

    @property
    def resolved_calib_size(self) -> int:
        """Calibration examples this config asks for: `calib_size`, or the method's default."""
        return self.calib_size or PTQ_METHODS.get(self.method).default_calib_size

    def quant_scheme(self) -> QuantConfig:
        """The uniform quantizers the method installs before its own search or replacement.

        Points a method later replaces with another quantizer family (log2 softmax, twin
        uniform, reparameterised inputs) are named in the handler's `granularity`.
        """
        return QuantConfig(w_bits=self.w_bits, a_bits=self.a_bits)

    def params(self) -> dict[str, Any]:
        """The method's own knobs (every field but bits and calibration size)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in _COMMON}

    def changed_params(self) -> dict[str, Any]:
        """The method's knobs that differ from their defaults: how a row or a label names this variant."""
        default = type(self)()
        return {k: v for k, v in self.params().items() if v != getattr(default, k)}

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, **dataclasses.asdict(self)}


_COMMON = ("w_bits", "a_bits", "calib_size")


@dataclass(frozen=True)
class Calibration:
    """What the shared prologue hands a method: the model's family, its batches and the device."""

    family: str
    batches: Sequence[Batch] | Iterable[Batch]
    device: torch.device | str


class PTQMethod:
    """Handler base: `apply` runs the shared prologue/epilogue around the method's `_quantize` hook."""

    name: ClassVar[str]
    config_cls: ClassVar[type[PTQConfig]] = PTQConfig
    description: ClassVar[str] = ""
    quantizes: ClassVar[str] = "W+A"  # or "W" for weight-only methods
    granularity: ClassVar[str] = ""
    default_calib_size: ClassVar[int] = 256
    families: ClassVar[tuple[str, ...]] = FAMILIES
    paper: ClassVar[str] = ""
    #: False: calibration batches stream through once (no copy held in memory)
    holds_batches: ClassVar[bool] = True
    #: parameters for a quick run (tests, smoke sweeps) of an iterative method; {} when the defaults are quick
    smoke_params: ClassVar[dict[str, Any]] = {}
    #: parameters of the method's repeated in-training runs (PTQ-aware ARNQ noise) where its full search
    #: costs too much to repeat every few steps, or where a measured surrogate trains a better fine-tune;
    #: {} runs it as configured (docs/arms.md#ptq-aware-noise)
    shadow_params: ClassVar[dict[str, Any]] = {}
    #: which run PTQ-aware ARNQ trains against unless the arm sets `ptq_settings`: "in_training" (with
    #: `shadow_params`) or "configured" (the method as configured, where the cheaper run is measured to be an
    #: unfaithful surrogate)
    shadow_settings: ClassVar[str] = "in_training"
    #: how PTQ-aware ARNQ perturbs weights between runs of this method unless the arm sets `weight_error`:
    #: "requantized" (through the last run's quantizers and weight change) or "frozen" (the last run's error
    #: held fixed, where requantizing is measured to make the training diverge)
    shadow_weight_error: ClassVar[str] = "requantized"
    #: False: PTQ-aware ARNQ cannot express this method's quantizers in the training model's coordinates
    #: (no `InputMap` describes what it did to a Linear): an arm aiming at it must use uniform-grid noise
    shadow_mirrorable: ClassVar[bool] = True

    def check_family(self, family: str) -> None:
        if family not in self.families:
            raise ValueError(
                f"PTQ method '{self.name}' supports model families {', '.join(self.families)}, not '{family}'"
            )

    def check_config(self, cfg: PTQConfig) -> None:
        """Raise ValueError for a config the method cannot run (called before any work)."""

    def apply(
        self, model: nn.Module, cfg: PTQConfig, calib_batches: Iterable[Batch], device: torch.device | str = "cpu"
    ) -> nn.Module:
        """Quantize `model` in place (every point switched on) and return it."""
        family = detect_family(model)
        self.check_family(family)
        self.check_config(cfg)
        with seeded():  # data loaders draw from the global RNG: the caller's state is restored
            batches = materialize(calib_batches, device) if self.holds_batches else calib_batches
            model.eval()
            self._quantize(model, cfg, Calibration(family, batches, device))
        return convert(model)

    def _quantize(self, model: nn.Module, cfg: PTQConfig, calib: Calibration) -> None:
        """Insert, calibrate and search the method's quantizers (all calibrated when it returns)."""
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "config": self.config_cls.__name__,
            "quantizes": self.quantizes,
            "granularity": self.granularity,
            "calib_size": self.default_calib_size,
            "families": ",".join(self.families),
            "description": self.description,
        }


PTQ_METHODS: HandlerRegistry[PTQMethod] = HandlerRegistry("PTQ method", name_field="method")


def register_ptq(cls: type[PTQMethod]) -> type[PTQMethod]:
    """Class decorator: register a PTQ method under `cls.name`, its handler keyed by its config type."""
    if cls.config_cls is PTQConfig:
        raise ValueError(f"PTQ method '{cls.name}' needs a config class of its own (a PTQConfig subclass)")
    return PTQ_METHODS.register_handler(cls)


def handler_for(cfg: PTQConfig) -> PTQMethod:
    """The registered handler of a config's type."""
    return PTQ_METHODS.handler(cfg)


def quantize_(
    model: nn.Module, cfg: PTQConfig, calib_batches: Iterable[Batch], device: torch.device | str = "cpu"
) -> nn.Module:
    """Quantize `model` in place with the method `cfg` belongs to; returns the fake-quantized model.

    `calib_batches` are `(inputs, labels)` pairs; a method that holds them uses at most what
    it is given (`cfg.resolved_calib_size` says how many examples it asks for).
    """
    return handler_for(cfg).apply(model, cfg, calib_batches, device)


def ptq_config(method: str, bits: str | None = None, **params: Any) -> PTQConfig:
    """The config of a registered method from its name, `bits` ('W4A4') and knobs; unknown keys raise."""
    if bits is not None:
        if "w_bits" in params or "a_bits" in params:
            raise ValueError(f"give the bits once: bits={bits!r} or w_bits/a_bits, not both")
        params["w_bits"], params["a_bits"] = parse_bits(bits)
    return PTQ_METHODS.config(method, **params)


def ptq_config_from_dict(data: Mapping[str, Any]) -> PTQConfig:
    """Inverse of `PTQConfig.to_dict`: the config named by data['method']."""
    return PTQ_METHODS.config_from_dict(data)
