"""Module-swap entry point: prepare -> calibrate -> convert.

`prepare(model, cfg)` inserts FakeQuantizers at every quantization point of a timm
ViT/DeiT/Swin or HF BERT-family model (all switched off: the model is unchanged),
`calibrate(model, batches)` runs data through it with observers on, and
`convert(model)` switches the calibrated points to fake quantization.
"""

from __future__ import annotations

import contextlib
import fnmatch
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from arnq.batch import forward_logits, move_to, token_mask
from arnq.quant.modules import QuantAct, QuantConv2d, QuantLinear, QuantProbs, quant_eager_attention
from arnq.quant.observers import OBSERVERS
from arnq.quant.quantizer import FakeQuantizer, QuantSpec, SectionQuantizer, token_mask_context

#: Every quantization point, individually switchable through `QuantConfig.points`.
POINTS = ("weight", "linear_in", "attn_q", "attn_k", "attn_v", "attn_probs", "gelu_out")
#: gelu_out is off by default: the fc2 input quantizer already sees the GELU output.
DEFAULT_POINTS = ("weight", "linear_in", "attn_q", "attn_k", "attn_v", "attn_probs")
FAMILIES = ("vit", "swin", "bert")
ACT_FP_BITS = 16  # a_bits >= 16 means activations stay in floating point (weight-only PTQ)
HF_ATTN_IMPL = "arnq_eager"


def check_bits(w_bits: Any, a_bits: Any, where: str = "") -> None:
    """Raise ValueError unless weights have 2..8 bits and activations 2..8 or 16 (floating point)."""
    if isinstance(w_bits, bool) or not isinstance(w_bits, int) or not 2 <= w_bits <= 8:
        raise ValueError(f"{where}w_bits={w_bits!r}: weight bits must be 2..8")
    if isinstance(a_bits, bool) or not isinstance(a_bits, int) or not (2 <= a_bits <= 8 or a_bits == ACT_FP_BITS):
        raise ValueError(f"{where}a_bits={a_bits!r}: activation bits must be 2..8, or {ACT_FP_BITS} for weight-only")


@dataclass(frozen=True)
class QuantConfig:
    """Bit widths, granularities and observers of a fake-quantized model."""

    w_bits: int = 8
    a_bits: int = 8
    probs_bits: int | None = None  # softmax output; None = a_bits
    edge_bits: int | None = 8  # patch embedding and classifier head; None = left in FP
    w_observer: str = "minmax"
    w_granularity: str = "channel"
    w_symmetric: bool = True
    a_observer: str = "minmax"
    a_observer_params: dict[str, Any] = field(default_factory=dict)
    a_granularity: str = "tensor"  # "tensor" (static) or "token" (dynamic)
    a_symmetric: bool = False
    points: tuple[str, ...] = DEFAULT_POINTS
    skip: tuple[str, ...] = ()  # fnmatch patterns of module names kept in FP

    def __post_init__(self) -> None:
        object.__setattr__(self, "points", tuple(self.points))
        object.__setattr__(self, "skip", tuple(self.skip))
        check_bits(self.w_bits, self.a_bits, "QuantConfig: ")
        for name in ("probs_bits", "edge_bits"):
            bits = getattr(self, name)
            if bits is not None and not (isinstance(bits, int) and 2 <= bits <= 8):
                raise ValueError(f"{name}={bits!r}: use 2..8 bits or None")
        unknown = [p for p in self.points if p not in POINTS]
        if unknown:
            raise ValueError(f"points {unknown}: unknown; valid points are {', '.join(POINTS)}")
        for name in ("w_observer", "a_observer"):
            if getattr(self, name) not in OBSERVERS:
                raise ValueError(f"{name}={getattr(self, name)!r}: choose one of {', '.join(OBSERVERS)}")
        if self.w_granularity not in ("tensor", "channel"):
            raise ValueError(f"w_granularity={self.w_granularity!r}: choose tensor or channel")
        if self.a_granularity not in ("tensor", "token"):
            raise ValueError(f"a_granularity={self.a_granularity!r}: choose tensor (static) or token (dynamic)")

    @property
    def quantizes_activations(self) -> bool:
        return self.a_bits < ACT_FP_BITS

    def weight_spec(self, bits: int) -> QuantSpec:
        return QuantSpec(bits, self.w_symmetric, self.w_granularity, 0, self.w_observer)

    def act_spec(self, bits: int) -> QuantSpec:
        return QuantSpec(bits, self.a_symmetric, self.a_granularity, -1, self.a_observer, dict(self.a_observer_params))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def detect_family(model: nn.Module) -> str:
    """'vit' (ViT/DeiT), 'swin' or 'bert' from the model class; raises for anything else."""
    from timm.models.swin_transformer import SwinTransformer
    from timm.models.vision_transformer import VisionTransformer

    if isinstance(model, VisionTransformer):
        return "vit"
    if isinstance(model, SwinTransformer):
        return "swin"
    config = getattr(model, "config", None)
    if config is not None and getattr(config, "model_type", None) in ("bert",):
        return "bert"
    raise ValueError(
        f"unsupported model class {type(model).__name__}: arnq quantizes timm VisionTransformer "
        "(ViT, DeiT), timm SwinTransformer and HF BERT models"
    )


def edge_patterns(model: nn.Module, family: str) -> tuple[str, ...]:
    """fnmatch patterns of the patch embedding and classifier head, which stay at edge_bits."""
    if family == "bert":
        return ("classifier", "classifier.*", "*pooler*")
    head = getattr(model, "pretrained_cfg", {}).get("classifier", "head")
    return ("patch_embed.*", head, f"{head}.*", "head", "head.*")


def name_matches(name: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def _set_child(root: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(root.get_submodule(parent_name) if parent_name else root, child, new)


def _register_hf_attention() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, eager_mask

    AttentionInterface.register(HF_ATTN_IMPL, quant_eager_attention)
    AttentionMaskInterface.register(HF_ATTN_IMPL, eager_mask)


def _is_timm_attention(module: nn.Module) -> bool:
    from timm.layers import Attention
    from timm.models.swin_transformer import WindowAttention

    return isinstance(module, (Attention, WindowAttention))


def _is_hf_self_attention(module: nn.Module) -> bool:
    return all(isinstance(getattr(module, n, None), nn.Linear) for n in ("query", "key", "value")) and hasattr(
        module, "config"
    )


def prepare(model: nn.Module, cfg: QuantConfig, family: str | None = None) -> nn.Module:
    """Insert (disabled) quantization points in place; returns the model.

    Activations: Linear inputs, q/k/v (outputs of the qkv or query/key/value
    projections), the softmax output and optionally the GELU output. Weights: every
    Linear and the patch-embedding conv, per output channel. The patch embedding and
    classifier head use `edge_bits`.
    """
    family = family or detect_family(model)
    if any(isinstance(m, FakeQuantizer) for m in model.modules()):
        raise ValueError("model is already prepared for quantization; prepare a fresh copy")
    points, acts = set(cfg.points), cfg.quantizes_activations
    edges = edge_patterns(model, family)
    probs_bits = cfg.probs_bits or cfg.a_bits

    def act_q(bits: int, point: str) -> FakeQuantizer | None:
        return FakeQuantizer(cfg.act_spec(bits), point) if acts and point in points else None

    # attention operands, found through the attention modules that own them
    qkv_outputs: dict[str, SectionQuantizer | FakeQuantizer] = {}
    for name, module in list(model.named_modules()):
        if name_matches(name, cfg.skip):
            continue
        if family in ("vit", "swin") and _is_timm_attention(module):
            module.fused_attn = False  # the explicit path exposes the two matmuls
            if act_q(probs_bits, "attn_probs") is not None:
                module.attn_drop = QuantProbs(module.attn_drop, act_q(probs_bits, "attn_probs"))
            parts = [act_q(cfg.a_bits, p) for p in ("attn_q", "attn_k", "attn_v")]
            if any(part is not None for part in parts):
                qkv_outputs[f"{name}.qkv"] = SectionQuantizer(parts)
        elif family == "bert" and _is_hf_self_attention(module):
            probs_q = act_q(probs_bits, "attn_probs")
            if probs_q is not None:
                module.probs_quantizer = probs_q
            for proj, point in (("query", "attn_q"), ("key", "attn_k"), ("value", "attn_v")):
                q = act_q(cfg.a_bits, point)
                if q is not None:
                    qkv_outputs[f"{name}.{proj}"] = q
    if family == "bert":
        _register_hf_attention()
        model.set_attn_implementation(HF_ATTN_IMPL)

    for name, module in list(model.named_modules()):
        if name_matches(name, cfg.skip) or isinstance(module, (QuantLinear, QuantConv2d)):
            continue
        edge = name_matches(name, edges)
        if edge and cfg.edge_bits is None:
            continue
        w_bits = cfg.edge_bits if edge else cfg.w_bits
        in_bits = cfg.edge_bits if edge else cfg.a_bits
        weight_q = FakeQuantizer(cfg.weight_spec(w_bits), "weight") if "weight" in points else None
        if isinstance(module, nn.Linear):
            _set_child(model, name, QuantLinear(module, weight_q, act_q(in_bits, "linear_in"), qkv_outputs.get(name)))
        elif isinstance(module, nn.Conv2d):
            _set_child(model, name, QuantConv2d(module, weight_q, act_q(in_bits, "linear_in")))
        elif _is_gelu(module) and "gelu_out" in points and acts:
            _set_child(model, name, QuantAct(module, FakeQuantizer(cfg.act_spec(cfg.a_bits), "gelu_out")))
    return model


def _is_gelu(module: nn.Module) -> bool:
    return isinstance(module, nn.GELU) or type(module).__name__ in ("GELUActivation", "GELUTanh", "QuickGELUActivation")


def quantizers(model: nn.Module) -> Iterator[tuple[str, FakeQuantizer]]:
    """Every live quantization point of a prepared model, with its module name."""
    for name, module in model.named_modules():
        if isinstance(module, FakeQuantizer):
            yield name, module


def _weight_owners(model: nn.Module) -> Iterator[QuantLinear | QuantConv2d]:
    for module in model.modules():
        if isinstance(module, (QuantLinear, QuantConv2d)) and module.weight_quantizer is not None:
            yield module


@torch.no_grad()
def calibrate(
    model: nn.Module,
    batches: Iterable[Any],
    *,
    device: torch.device | str = "cpu",
    max_batches: int | None = None,
) -> int:
    """Observe activation ranges on calibration batches and weight ranges; returns examples seen.

    Batches are `(inputs, labels)`; padding tokens (attention_mask == 0) are excluded
    from activation statistics.
    """
    was_training = model.training
    model.eval()
    act_points = [q for _, q in quantizers(model) if q.point != "weight"]
    for q in act_points:
        q.quantizing = False
        q.start_observing()
    seen = 0
    try:
        for i, (inputs, _labels) in enumerate(batches):
            if max_batches is not None and i >= max_batches:
                break
            inputs = move_to(inputs, device)
            with token_mask_context(token_mask(inputs)):
                forward_logits(model, inputs)
            seen += len(_labels)
    finally:
        for q in act_points:
            q.observing = False
    if act_points and seen == 0:
        raise ValueError("calibration got no batches: give at least one (inputs, labels) batch")
    for q in act_points:
        q.observing = True
        q.finish_observing()
    calibrate_weights(model)
    model.train(was_training)
    return seen


@torch.no_grad()
def calibrate_weights(model: nn.Module) -> None:
    """(Re)compute every weight quantizer's step from the current weights."""
    for module in _weight_owners(model):
        wq = module.weight_quantizer
        wq.start_observing()
        wq.observe(module.weight)
        wq.finish_observing()


def convert(model: nn.Module) -> nn.Module:
    """Switch every calibrated quantization point to fake quantization."""
    missing = [name for name, q in quantizers(model) if not q.calibrated]
    if missing:
        raise RuntimeError(f"{len(missing)} quantization points are not calibrated (first: {missing[0]}); run calibrate()")
    for _, q in quantizers(model):
        q.quantizing = True
    return model


def set_quantizing(model: nn.Module, enabled: bool, points: Iterable[str] | None = None) -> None:
    """Switch quantization on/off for all points, or only the given point kinds."""
    wanted = set(points) if points is not None else None
    for _, q in quantizers(model):
        if wanted is None or q.point in wanted:
            if enabled and not q.calibrated:
                raise RuntimeError(f"point {q.point} is not calibrated; run calibrate() first")
            q.quantizing = enabled


@contextlib.contextmanager
def quantization_disabled(model: nn.Module) -> Iterator[nn.Module]:
    """Temporarily run a converted model in floating point."""
    states = [(q, q.quantizing) for _, q in quantizers(model)]
    for q, _ in states:
        q.quantizing = False
    try:
        yield model
    finally:
        for q, state in states:
            q.quantizing = state


def point_summary(model: nn.Module) -> dict[str, int]:
    """Count of live quantization points per kind."""
    counts: dict[str, int] = {}
    for _, q in quantizers(model):
        counts[q.point] = counts.get(q.point, 0) + 1
    return counts
