"""Machinery shared by the search and reconstruction PTQ methods.

Calibration data held in memory (the methods pass over it several times), activation
capture at module inputs/outputs with padding tokens dropped, and the
LayerNorm -> Linear groups that reparameterising methods (SmoothQuant, RepQ-ViT, AWQ)
fold scales through.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from arnq.batch import forward_logits, move_to, token_mask
from arnq.quant.api import edge_patterns, name_matches
from arnq.quant.quantizer import _TOKEN_MASK, FakeQuantizer, token_mask_context, valid_values

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


def rows(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """(..., C) activations of real tokens only, as (N, C)."""
    return valid_values(x, mask).reshape(-1, x.shape[-1])


Fold = Callable[[Any, torch.Tensor], Any]


@torch.no_grad()
def fold_rows(model: nn.Module, names: Iterable[str], batches: Sequence[Batch], fold: Fold,
              what: str = "input") -> dict[str, Any]:
    """Reduce each named module's (N, C) input (or output) rows over the calibration batches, in eval mode.

    `fold(acc, rows)` returns the new accumulator (acc is None at the first batch); padding tokens
    are dropped before it sees them. Collecting, a second-moment sum or a running max are each a fold.
    """
    if what not in ("input", "output"):
        raise ValueError(f"what={what!r}: choose input or output")
    acc: dict[str, Any] = {}
    handles = []
    for name in names:
        acc[name] = None

        def hook(_module, args, output, name=name):
            x = args[0] if what == "input" else output
            acc[name] = fold(acc[name], rows(x.detach(), _TOKEN_MASK.get()))

        handles.append(model.get_submodule(name).register_forward_hook(hook))
    was_training = model.training
    model.eval()
    try:
        run_hooked(model, batches, handles)
    finally:
        model.train(was_training)
    return acc


def run_hooked(model: nn.Module, batches: Sequence[Batch], handles: Iterable[Any]) -> None:
    """Run every batch through `model` (padding marked), then remove the hook `handles`, also on error."""
    try:
        for inputs, _ in batches:
            run_model(model, inputs)
    finally:
        for handle in handles:
            handle.remove()


@dataclass
class AttentionCall:
    """One captured call of a module (a self-attention, an MLP): its positional and keyword arguments, the token mask."""

    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    mask: torch.Tensor | None


@torch.no_grad()
def capture_calls(model: nn.Module, names: Sequence[str], batches: Sequence[Batch]) -> dict[str, list[AttentionCall]]:
    """The arguments every named module is called with over `batches`, with each batch's token mask."""
    calls: dict[str, list[AttentionCall]] = {name: [] for name in names}
    handles = []
    for name in names:
        def hook(_module, args, kwargs, name=name):
            calls[name].append(AttentionCall(tuple(a.detach() if torch.is_tensor(a) else a for a in args),
                                             dict(kwargs), _TOKEN_MASK.get()))

        handles.append(model.get_submodule(name).register_forward_pre_hook(hook, with_kwargs=True))
    run_hooked(model, batches, handles)
    return calls


def collect(model: nn.Module, names: Iterable[str], batches: Sequence[Batch], what: str = "input") -> dict[str, torch.Tensor]:
    """Concatenated (N, C) inputs (or outputs) of the named modules over the calibration batches."""
    parts = fold_rows(model, names, batches, _append, what)
    return {name: torch.cat(chunks) for name, chunks in parts.items()}


def _append(acc: list[torch.Tensor] | None, x: torch.Tensor) -> list[torch.Tensor]:
    if acc is None:
        return [x]
    acc.append(x)
    return acc


def sample_rows(x: torch.Tensor, n: int, gen: torch.Generator) -> torch.Tensor:
    """At most `n` rows of x, drawn without replacement (all of x when it has no more)."""
    return x if x.shape[0] <= n else x[torch.randperm(x.shape[0], generator=gen)[:n]]


class ScaledInput(FakeQuantizer):
    """A Linear's input point that maps x -> x / scale - shift (per channel) before quantizing, also when off.

    The reparameterising methods fold the inverse into the Linear (W diag(scale), bias + W diag(scale) shift),
    so the FP function is unchanged; used where the map cannot be folded into the previous LayerNorm.
    """

    def __init__(self, base: FakeQuantizer, scale: torch.Tensor, shift: torch.Tensor | None = None) -> None:
        super().__init__(base.spec, base.point)
        self.register_buffer("in_scale", scale.detach().clone(), persistent=False)
        self.register_buffer("in_shift", None if shift is None else shift.detach().clone(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x / self.in_scale.to(x.dtype)
        if self.in_shift is not None:
            x = x - self.in_shift.to(x.dtype)
        return super().forward(x)


@dataclass(frozen=True)
class FastMap:
    """x -> x M and x -> x M^T over the last dimension for an orthogonal M, without the dense product
    (a Hadamard transform as two small Kronecker factors, a head-wise block): PTQ-aware ARNQ applies a
    method's rotations on every training step, where a dense d x d product per point would cost more
    than the Linear it perturbs. The functions cast their factors to x's dtype and device."""

    apply: Callable[[torch.Tensor], torch.Tensor]
    apply_t: Callable[[torch.Tensor], torch.Tensor]

    def then(self, other: FastMap) -> FastMap:
        """x -> x M N (and x -> x (M N)^T = x N^T M^T), N `other`'s matrix."""
        return FastMap(lambda x: other.apply(self.apply(x)), lambda x: self.apply_t(other.apply_t(x)))


@dataclass(frozen=True)
class InputMap:
    """How a method changed one Linear (or conv) while keeping its FP function.

    Its weight became `left @ W diag(scale) @ rotation` and its bias `left @ (b + W (scale * shift))`;
    its input quantizer quantizes `(x / scale - shift) @ rotation` of the original input x (through a
    folded LayerNorm, a `ScaledInput` or an online rotation). `scale` and `shift` are per input
    channel (RepQ-ViT, SmoothQuant, OS+); `rotation` (in x in) is an orthogonal map of the input
    channels and `left` (out x out) an invertible map of the output channels, with `left_inv` its
    inverse (Hadamard rotation). None means the identity; `moves_inputs` is False when only the
    outputs changed (the input quantizer sees x itself). `fast_rotation`, where the method has one,
    computes x @ rotation and x @ rotation^T with fewer operations (`FastMap`)."""

    scale: torch.Tensor
    shift: torch.Tensor | None = None
    rotation: torch.Tensor | None = None
    left: torch.Tensor | None = None
    left_inv: torch.Tensor | None = None
    moves_inputs: bool = True
    fast_rotation: FastMap | None = None


_INPUT_MAPS = "arnq_input_maps"
_POINT_ROTATIONS = "arnq_point_rotations"
_FAST_POINT_ROTATIONS = "arnq_fast_point_rotations"


def _records(model: nn.Module, attr: str) -> dict:
    """The dict of records a PTQ method keeps on `model` under `attr`, created on first use."""
    records = getattr(model, attr, None)
    if records is None:
        records = {}
        setattr(model, attr, records)
    return records


def record_input_map(model: nn.Module, name: str, scale: torch.Tensor, shift: torch.Tensor | None = None,
                     rotation: torch.Tensor | None = None, left: torch.Tensor | None = None,
                     left_inv: torch.Tensor | None = None, moves_inputs: bool = True,
                     fast_rotation: FastMap | None = None) -> None:
    """Note on `model` how the Linear `name` was changed (see `InputMap`)."""
    if (left is None) != (left_inv is None):
        raise ValueError("give an output map together with its inverse (left and left_inv)")
    if fast_rotation is not None and rotation is None:
        raise ValueError("a fast rotation computes the dense one: give rotation too")

    def shared(t: torch.Tensor | None) -> torch.Tensor | None:  # rotations are shared across layers: no copy
        return None if t is None else t.detach()

    _records(model, _INPUT_MAPS)[name] = InputMap(scale.detach().clone(), None if shift is None else shift.detach().clone(),
                          shared(rotation), shared(left), shared(left_inv), moves_inputs, fast_rotation)


def input_maps(model: nn.Module) -> dict[str, InputMap]:
    """The reparameterisations recorded on `model` by its PTQ method, by Linear name (empty when none)."""
    return dict(getattr(model, _INPUT_MAPS, None) or {})


def record_point_rotation(model: nn.Module, path: str, rotation: torch.Tensor, fast: FastMap | None = None) -> None:
    """Note on `model` that the activation point `path` quantizes x @ rotation of the original model's x
    (last dimension; rotation orthogonal), e.g. a query rotated head by head; `fast` computes the same
    products with fewer operations (`FastMap`)."""
    _records(model, _POINT_ROTATIONS)[path] = rotation.detach()  # shared across layers, as in `record_input_map`
    if fast is not None:
        _records(model, _FAST_POINT_ROTATIONS)[path] = fast


def point_rotations(model: nn.Module) -> dict[str, torch.Tensor]:
    """The activation-point rotations recorded on `model` by its PTQ method, by quantizer path."""
    return dict(getattr(model, _POINT_ROTATIONS, None) or {})


def fast_point_rotations(model: nn.Module) -> dict[str, FastMap]:
    """The `FastMap`s of the recorded activation-point rotations that have one, by quantizer path."""
    return dict(getattr(model, _FAST_POINT_ROTATIONS, None) or {})


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
