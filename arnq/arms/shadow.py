"""The target PTQ method's own quantizers, re-derived from the weights being fine-tuned.

PTQ-aware ARNQ perturbs every point the target quantizes by that point's real
quantization error. `TargetShadow.refresh` copies the training model's current weights
into an FP model, runs the target's whole PTQ method on it (`quantize_`: its
reparameterisation, special quantizers, searches and weight rounding) and returns, for
each quantization point, the function Q~ that maps a tensor of the *training* model to
what the target's quantized model would compute there:

- a plain point: Q~(x) = q.quantized_value(x) (log2 / twin-uniform / PTF / per-token /
  noisy-bias points alike);
- the input of a Linear the method reparameterised by (r, b) and rotated by R (RepQ-ViT,
  SmoothQuant, OS+: R = I; the Hadamard rotation: r, b its folded LayerNorm, R orthogonal;
  `arnq.ptq.common.InputMap`): Q~(x) = r (q((x / r - b) R) R^T + b), with the products by R
  through the method's `FastMap` where it has one (Kronecker factors instead of a dense d x d);
- a q/k/v point the method rotated head by head (`point_rotations`): Q~(x) = q(x R) R^T;
- a weight: Q~(W) = L^-1 q(L W diag(r) R + D) R^T diag(1 / r), where D is the method's own
  change to the weight (GPTQ's error compensation, AdaRound's and MREM's learned rounding)
  at the time of the refresh, and L the map of its output channels (the Hadamard rotation's
  writers and q/k/v rows; the identity elsewhere);
- a Linear's bias: the method's own change to it (Liu 2021's bias correction), and, under
  a shifted reparameterisation, -(Q~(W) - W) (r b), because the folded bias W r b is
  multiplied by the unquantized W r while the weight is quantized.

Points the shadow has and the training model lacks (FQ-ViT's LayerNorm inputs) are
reached through a forward pre-hook on the module that owns them. What is left out: the
noise follows the target's quantizers as they were at the last refresh (weights and
their ranges move a little in between). Details: docs/arms.md#ptq-aware-noise.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn

from arnq.ptq import PTQConfig, quantize_
from arnq.ptq.base import handler_for
from arnq.ptq.common import Batch, FastMap, InputMap, fast_point_rotations, input_maps, point_rotations
from arnq.quant import quantizers
from arnq.quant.modules import QuantConv2d, QuantLinear
from arnq.quant.quantizer import FakeQuantizer

Source = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class ShadowPoint:
    """One quantization point of the target, as a function of the training model's tensor."""

    path: str  # the quantizer's module path in the shadow (and, where it exists, in the training model)
    kind: str  # the FakeQuantizer's point kind: weight, linear_in, attn_q, attn_probs, norm_in, ...
    source: Source
    quantizer: FakeQuantizer  # the shadow's quantizer behind `source` (its spec names bits and granularity)
    #: weights only: the method's own change to the Linear's bias (Liu 2021's bias correction), and r * b of a
    #: shifted reparameterisation, whose bias term W r b the quantized weight turns into Q(W r) b
    bias_change: torch.Tensor | None = None
    shift: torch.Tensor | None = None


def _dense_map(rot: torch.Tensor) -> FastMap:
    """x -> x R and x -> x R^T as dense products (a rotation the method gave no `FastMap` for)."""
    return FastMap(lambda x: x @ rot.to(x.dtype), lambda x: x @ rot.to(x.dtype).T)


def _rotation(mapping: InputMap | None) -> FastMap | None:
    """The map's rotation R as a `FastMap`: the method's own where it gave one, else the dense products."""
    if mapping is None or mapping.rotation is None:
        return None
    return mapping.fast_rotation or _dense_map(mapping.rotation)


def _activation_source(q: FakeQuantizer, mapping: InputMap | None) -> Source:
    if mapping is None or not mapping.moves_inputs:
        return q.quantized_value
    scale, shift, rot = mapping.scale, mapping.shift, _rotation(mapping)

    def source(x: torch.Tensor) -> torch.Tensor:
        r = scale.to(x.dtype)
        mapped = x / r if shift is None else x / r - shift.to(x.dtype)
        if rot is not None:
            mapped = rot.apply(mapped)
        out = q.quantize(mapped)  # the bare quantizer: the map (and any online rotation) is applied here
        if rot is not None:
            out = rot.apply_t(out)
        return (out if shift is None else out + shift.to(x.dtype)) * r

    return source


def _rotated_source(q: FakeQuantizer, rot: FastMap) -> Source:
    """An activation point that quantizes x R of the training model's x (a head-wise q/k/v rotation)."""

    def source(x: torch.Tensor) -> torch.Tensor:
        return rot.apply_t(q.quantize(rot.apply(x)))

    return source


def _to_shadow(w: torch.Tensor, mapping: InputMap | None, rot: FastMap | None) -> torch.Tensor:
    """A training-model weight in the shadow's coordinates: left @ W diag(scale) @ rotation (2-D view);
    `rot` is `_rotation(mapping)`, derived once by the caller."""
    if mapping is None:
        return w
    flat = w.reshape(w.shape[0], -1) * mapping.scale.to(w.dtype)
    if rot is not None:
        flat = rot.apply(flat)
    if mapping.left is not None:
        flat = mapping.left.to(w.dtype) @ flat
    return flat.reshape(w.shape)


def _from_shadow(w: torch.Tensor, mapping: InputMap | None, rot: FastMap | None) -> torch.Tensor:
    """The inverse of `_to_shadow`."""
    if mapping is None:
        return w
    flat = w.reshape(w.shape[0], -1)
    if mapping.left_inv is not None:
        flat = mapping.left_inv.to(w.dtype) @ flat
    if rot is not None:
        flat = rot.apply_t(flat)
    return (flat / mapping.scale.to(w.dtype)).reshape(w.shape)


def _weight_source(q: FakeQuantizer, mapping: InputMap | None, delta: torch.Tensor | None) -> Source:
    rot = _rotation(mapping)

    def source(w: torch.Tensor) -> torch.Tensor:
        mapped = _to_shadow(w, mapping, rot)
        if delta is not None:
            mapped = mapped + delta.to(w.dtype)
        return _from_shadow(q.quantize(mapped), mapping, rot)

    return source


def _change(new: torch.Tensor, ref: torch.Tensor) -> torch.Tensor | None:
    """new - ref, or None when it is float rounding only (a reparameterisation's W r, an untouched bias)."""
    diff = new - ref
    return None if float(diff.abs().max()) <= 1e-6 * max(float(ref.abs().max()), 1e-12) else diff


#: NoiseConfig.ptq_settings values: the target handler's cheaper `shadow_params`, or the method as configured
PTQ_SETTINGS = ("in_training", "configured")


def resolved_settings(target: PTQConfig, settings: str | None = None) -> str:
    """The in-training settings a target run uses: `settings`, or, for None, the target handler's `shadow_settings`."""
    return handler_for(target).shadow_settings if settings is None else settings


def shadow_config(target: PTQConfig, calib_examples: int, settings: str | None = None) -> PTQConfig:
    """The target config the in-training run uses, calibrated on `calib_examples`: with the handler's
    cheaper `shadow_params` (`settings="in_training"`), the method as configured (`"configured"`), or, for
    None, the handler's `shadow_settings`.

    Raises ValueError for a method whose quantizers the shadow cannot map back (`shadow_mirrorable`).
    """
    handler = handler_for(target)
    settings = resolved_settings(target, settings)
    if settings not in PTQ_SETTINGS:
        raise ValueError(f"settings={settings!r}: choose one of {', '.join(PTQ_SETTINGS)} "
                         "(in_training: the handler's shadow_params; configured: the method as configured)")
    if not handler.shadow_mirrorable:
        raise ValueError(
            f"PTQ-aware ARNQ cannot aim at '{target.method}': its quantizers cannot be mapped back to the "
            "training model's coordinates; give the arm uniform-grid noise instead (delta_observer: target, or an "
            "observer name such as minmax)")
    params = dict(handler.shadow_params) if settings == "in_training" else {}
    return replace(target, calib_size=calib_examples, **params)


class TargetShadow:
    """Runs the target PTQ method on copies of a model's current weights (see the module docstring).

    `template` is an FP model of the same architecture (never modified); `batches` the
    calibration batches every refresh uses.
    """

    def __init__(self, template: nn.Module, target: PTQConfig, batches: Sequence[Batch],
                 device: torch.device | str = "cpu") -> None:
        if not batches:
            raise ValueError("PTQ-aware ARNQ needs calibration batches for the target PTQ method")
        self.template = template
        self.target = target
        self.batches = list(batches)
        self.device = device
        self.model: nn.Module | None = None  # the latest quantized shadow (its quantizers back the sources)
        self.refreshes = 0
        self.seconds = 0.0

    def refresh(self, weights: dict[str, torch.Tensor]) -> list[ShadowPoint]:
        """Quantize a copy of the template holding `weights` (FP keys) with the target; its points' sources."""
        start = time.perf_counter()
        shadow = copy.deepcopy(self.template)
        shadow.load_state_dict(weights)
        shadow.to(self.device)
        before = {name: (m.weight.detach().clone(), None if m.bias is None else m.bias.detach().clone())
                  for name, m in shadow.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))}
        quantize_(shadow, self.target, self.batches, self.device)
        maps, rotated, fast_rotated = input_maps(shadow), point_rotations(shadow), fast_point_rotations(shadow)
        points: list[ShadowPoint] = []
        for name, module in shadow.named_modules():
            if isinstance(module, (QuantLinear, QuantConv2d)):
                wq = module.weight_quantizer
                if wq is not None and wq.quantizing:
                    mapping = maps.get(name)
                    w_ref, b_ref = before[name]
                    ref = w_ref if mapping is None else _to_shadow(w_ref.double(), mapping,
                                                                   _rotation(mapping)).to(w_ref.dtype)
                    delta = _change(module.weight.detach(), ref)  # the method's own (GPTQ, AdaRound, MREM)
                    bias_change = shift = None
                    if mapping is not None and mapping.shift is not None:
                        shift = mapping.scale * mapping.shift
                    if module.bias is not None:
                        folded = torch.zeros_like(module.bias) if b_ref is None else b_ref.double()
                        if shift is not None:
                            folded = folded + w_ref.double().reshape(w_ref.shape[0], -1) @ shift.double()
                        if mapping is not None and mapping.left is not None:
                            folded = mapping.left.double() @ folded
                        bias_change = _change(module.bias.detach(), folded.to(module.bias.dtype))
                        if bias_change is not None and mapping is not None and mapping.left_inv is not None:
                            bias_change = mapping.left_inv.to(bias_change.dtype) @ bias_change
                    points.append(ShadowPoint(f"{name}.weight_quantizer", "weight", _weight_source(wq, mapping, delta),
                                              wq, bias_change, shift))
        for path, q in quantizers(shadow):
            if q.point == "weight" or not q.quantizing:
                continue
            owner = path.rsplit(".", 1)[0]
            mapping = maps.get(owner) if path.endswith(".input_quantizer") else None
            source = (_rotated_source(q, fast_rotated.get(path) or _dense_map(rotated[path])) if path in rotated
                      else _activation_source(q, mapping))
            points.append(ShadowPoint(path, q.point, source, q))
        self.model = shadow
        self.refreshes += 1
        self.seconds += time.perf_counter() - start
        return points

    def stats(self) -> dict[str, Any]:
        return {"refreshes": self.refreshes, "seconds": round(self.seconds, 2)}
