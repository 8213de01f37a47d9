"""Machinery shared by the search and reconstruction PTQ methods.

Calibration data held in memory (the methods pass over it several times), activation
capture at module inputs/outputs with padding tokens dropped, and the
LayerNorm -> Linear groups that reparameterising methods (SmoothQuant, RepQ-ViT, AWQ)
fold scales through.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from arnq.batch import forward_logits, move_to, token_mask
from arnq.quant.api import ACT_FP_BITS, QuantConfig, edge_patterns, name_matches
from arnq.quant.quantizer import _TOKEN_MASK, token_mask_context, valid_values

Batch = tuple[Any, torch.Tensor]


def materialize(calib_batches: Iterable[Batch], device: torch.device | str = "cpu") -> list[Batch]:
    """The calibration batches as a list on `device` (methods iterate them more than once)."""
    batches = [(move_to(inputs, device), labels) for inputs, labels in calib_batches]
    if not batches:
        raise ValueError("calibration got no batches: give at least one (inputs, labels) batch")
    return batches


def run_model(model: nn.Module, inputs: Any) -> torch.Tensor:
    """Logits of one batch with padding positions marked for the observers."""
    with token_mask_context(token_mask(inputs)):
        return forward_logits(model, inputs)


@torch.no_grad()
def forward_batches(model: nn.Module, batches: Sequence[Batch]) -> None:
    """Run every calibration batch through the model in eval mode (no outputs kept)."""
    was_training = model.training
    model.eval()
    for inputs, _ in batches:
        run_model(model, inputs)
    model.train(was_training)


def rows(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """(..., C) activations of real tokens only, as (N, C)."""
    return valid_values(x, mask).reshape(-1, x.shape[-1])


@contextlib.contextmanager
def recording(model: nn.Module, names: Iterable[str], what: str = "input") -> Iterator[dict[str, list[torch.Tensor]]]:
    """Record the (N, C) input or output rows of the named modules on every forward inside the block.

    Padding tokens are dropped when the forward runs under `run_model` (it sets the token mask).
    """
    if what not in ("input", "output"):
        raise ValueError(f"what={what!r}: choose input or output")

    store: dict[str, list[torch.Tensor]] = {}
    handles = []
    for name in names:
        module = model.get_submodule(name)
        store[name] = []

        def hook(_module, args, output, name=name):
            x = args[0] if what == "input" else output
            store[name].append(rows(x.detach(), _TOKEN_MASK.get()))

        handles.append(module.register_forward_hook(hook))
    try:
        yield store
    finally:
        for handle in handles:
            handle.remove()


@torch.no_grad()
def collect(model: nn.Module, names: Iterable[str], batches: Sequence[Batch], what: str = "input") -> dict[str, torch.Tensor]:
    """Concatenated (N, C) inputs (or outputs) of the named modules over the calibration batches."""
    was_training = model.training
    model.eval()
    with recording(model, list(names), what) as store:
        for inputs, _ in batches:
            run_model(model, inputs)
    model.train(was_training)
    return {name: torch.cat(parts) for name, parts in store.items()}


def base_config(w_bits: int, a_bits: int, **overrides: Any) -> QuantConfig:
    """The project's default quantizer layout at these bits (per-channel sym W, per-tensor asym min-max A)."""
    return QuantConfig(w_bits=w_bits, a_bits=a_bits, **overrides)


def quantizes_activations(a_bits: int) -> bool:
    return a_bits < ACT_FP_BITS


def block_linears(model: nn.Module, family: str) -> list[tuple[str, nn.Linear]]:
    """Every Linear of the transformer blocks (patch embedding, pooler and head excluded), in module order."""
    edges = edge_patterns(model, family)
    return [
        (name, m) for name, m in model.named_modules() if isinstance(m, nn.Linear) and not name_matches(name, edges)
    ]


@dataclass(frozen=True)
class NormGroup:
    """A LayerNorm and the Linears that read its output.

    `foldable` is True when the LayerNorm output feeds only those Linears (pre-LN ViT/Swin),
    so a per-channel scale folds into its affine parameters exactly; False for post-LN BERT,
    where the same output is also the residual stream. Swin's window partition and shift
    only move rows, so a per-channel fold stays exact there (window padding, which the
    standard 224 resolutions never need, would add zero rows the fold does not reach).
    """

    norm: str
    linears: tuple[str, ...]
    foldable: bool


def norm_groups(model: nn.Module, family: str) -> list[NormGroup]:
    """The LayerNorm -> Linear groups of a timm ViT/DeiT/Swin or HF BERT model."""
    groups: list[NormGroup] = []
    if family in ("vit", "swin"):
        for name, module in model.named_modules():
            prefix = f"{name}." if name else ""
            if all(hasattr(module, a) for a in ("norm1", "attn", "norm2", "mlp")):
                groups.append(NormGroup(f"{prefix}norm1", (f"{prefix}attn.qkv",), True))
                groups.append(NormGroup(f"{prefix}norm2", (f"{prefix}mlp.fc1",), True))
            elif hasattr(module, "reduction") and isinstance(getattr(module, "norm", None), nn.LayerNorm):
                groups.append(NormGroup(f"{prefix}norm", (f"{prefix}reduction",), True))
        return groups
    if family == "bert":
        layers = [n for n, _ in model.named_modules() if n.rpartition(".")[0].endswith("encoder.layer")]
        embeddings = next(n for n, _ in model.named_modules() if n.endswith("embeddings"))
        previous = f"{embeddings}.LayerNorm"
        for layer in layers:
            qkv = tuple(f"{layer}.attention.self.{p}" for p in ("query", "key", "value"))
            groups.append(NormGroup(previous, qkv, False))
            groups.append(NormGroup(f"{layer}.attention.output.LayerNorm", (f"{layer}.intermediate.dense",), False))
            previous = f"{layer}.output.LayerNorm"
        return groups
    raise ValueError(f"no LayerNorm groups for model family '{family}'")
