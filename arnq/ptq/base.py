"""PTQ method registry: each method is a frozen config plus a handler that quantizes a model."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from arnq.registry import Registry, config_from_dict

BITS_RE = re.compile(r"^W(\d+)A(\d+)$")
ACT_FP_BITS = 16


def parse_bits(text: str) -> tuple[int, int]:
    """'W4A8' -> (4, 8). Weights 2..8 bits; activations 2..8, or 16 for FP activations."""
    match = BITS_RE.match(str(text).strip().upper())
    if not match:
        raise ValueError(
            f"bits {text!r} is malformed: write W<weight bits>A<activation bits>, e.g. W8A8, W4A4, W4A16"
        )
    w_bits, a_bits = int(match.group(1)), int(match.group(2))
    if not 2 <= w_bits <= 8:
        raise ValueError(f"bits {text!r}: weight bits must be 2..8 (got {w_bits})")
    if not (2 <= a_bits <= 8 or a_bits == ACT_FP_BITS):
        raise ValueError(f"bits {text!r}: activation bits must be 2..8, or 16 for weight-only (got {a_bits})")
    return w_bits, a_bits


def format_bits(w_bits: int, a_bits: int) -> str:
    return f"W{w_bits}A{a_bits}"


@dataclass(frozen=True)
class PTQConfig:
    """Fields shared by every PTQ method; subclasses add the method's own parameters."""

    calib_size: int | None = None  # None: the method's paper default

    def __post_init__(self) -> None:
        if self.calib_size is not None and (not isinstance(self.calib_size, int) or self.calib_size < 1):
            raise ValueError(f"calib_size={self.calib_size!r}: use a positive integer (or omit for the default)")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, params: Mapping[str, Any]) -> PTQConfig:
        """Build from user params; unknown keys raise with the valid ones listed."""
        return config_from_dict(cls, params)


class PTQMethod:
    """Handler base: declares what it quantizes and applies itself to a model."""

    name: ClassVar[str]
    config_cls: ClassVar[type[PTQConfig]] = PTQConfig
    description: ClassVar[str] = ""
    quantizes: ClassVar[str] = "W+A"  # or "W" for weight-only methods
    granularity: ClassVar[str] = ""
    default_calib_size: ClassVar[int] = 256
    families: ClassVar[tuple[str, ...]] = ("vit", "swin", "bert")
    paper: ClassVar[str] = ""
    #: parameters for a quick run (tests, smoke sweeps) of an iterative method; {} when the defaults are quick
    smoke_params: ClassVar[dict[str, Any]] = {}

    def config(self, params: Mapping[str, Any] | None = None) -> PTQConfig:
        return self.config_cls.from_dict(dict(params or {}))

    def calib_size(self, cfg: PTQConfig) -> int:
        return cfg.calib_size or self.default_calib_size

    def check_family(self, family: str) -> None:
        if family not in self.families:
            raise ValueError(
                f"PTQ method '{self.name}' supports model families {', '.join(self.families)}, not '{family}'"
            )

    def apply(
        self,
        model: nn.Module,
        cfg: PTQConfig,
        *,
        w_bits: int,
        a_bits: int,
        calib_batches: Iterable[Any],
        device: torch.device | str = "cpu",
    ) -> nn.Module:
        """Quantize `model` in place (fake quantization enabled) and return it."""
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "quantizes": self.quantizes,
            "granularity": self.granularity,
            "calib_size": self.default_calib_size,
            "families": ",".join(self.families),
            "description": self.description,
        }


PTQ_METHODS: Registry[PTQMethod] = Registry("PTQ method")


def register_ptq(cls: type[PTQMethod]) -> type[PTQMethod]:
    """Class decorator: instantiate and register a PTQ method under `cls.name`."""
    PTQ_METHODS.register(cls.name, cls())
    return cls
