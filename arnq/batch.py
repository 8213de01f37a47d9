"""Batches as (inputs, labels) where inputs is an image tensor or a dict of token tensors."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

Inputs = torch.Tensor | Mapping[str, torch.Tensor]


def move_to(inputs: Any, device: torch.device | str) -> Any:
    """Move a tensor, or every tensor of a mapping/tuple/list, to `device`."""
    if isinstance(inputs, torch.Tensor):
        return inputs.to(device, non_blocking=True)
    if isinstance(inputs, Mapping):
        return {k: move_to(v, device) for k, v in inputs.items()}
    if isinstance(inputs, (tuple, list)):
        return type(inputs)(move_to(v, device) for v in inputs)
    return inputs


def forward_logits(model: nn.Module, inputs: Inputs) -> torch.Tensor:
    """Class logits of a timm model (tensor input) or an HF model (keyword tensors)."""
    if isinstance(inputs, Mapping):
        out = model(**inputs)
        return out.logits if hasattr(out, "logits") else out
    return model(inputs)


def token_mask(inputs: Inputs) -> torch.Tensor | None:
    """(B, T) bool mask of real (non-padding) tokens, or None for images."""
    if isinstance(inputs, Mapping) and "attention_mask" in inputs:
        return inputs["attention_mask"].bool()
    return None
