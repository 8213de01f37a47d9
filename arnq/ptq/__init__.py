"""Post-training quantization methods, registered by name in PTQ_METHODS."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import nn

# importing a method's module registers it
from arnq.ptq import (  # noqa: F401
    adaround,
    awq,
    calibrators,
    fq_vit,
    gptq,
    liu2021,
    mrem,
    noisyquant,
    ptq4vit,
    repq_vit,
    smoothquant,
)
from arnq.ptq.base import PTQ_METHODS, PTQConfig, PTQMethod, format_bits, parse_bits, register_ptq


def quantize(
    model: nn.Module,
    method: str,
    *,
    w_bits: int,
    a_bits: int,
    calib_batches: Iterable[Any],
    params: Mapping[str, Any] | None = None,
    device: torch.device | str = "cpu",
) -> nn.Module:
    """Apply the named PTQ method to `model` in place; returns the fake-quantized model."""
    handler = PTQ_METHODS.get(method)
    cfg = handler.config(params)
    return handler.apply(model, cfg, w_bits=w_bits, a_bits=a_bits, calib_batches=calib_batches, device=device)


__all__ = ["PTQ_METHODS", "PTQConfig", "PTQMethod", "format_bits", "parse_bits", "quantize", "register_ptq"]
