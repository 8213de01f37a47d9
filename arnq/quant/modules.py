"""Quantized module wrappers that share the wrapped module's parameters.

The wrappers keep the original parameter objects (so state_dict keys and optimizer
state are unchanged) and add FakeQuantizer submodules whose buffers are not persisted.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from arnq.quant.quantizer import FakeQuantizer, SectionQuantizer

_CONV_ATTRS = (
    "in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation", "transposed",
    "output_padding", "groups", "padding_mode", "_reversed_padding_repeated_twice",
)


class QuantLinear(nn.Linear):
    """Linear with optional input, weight and output quantization points."""

    def __init__(
        self,
        linear: nn.Linear,
        weight_quantizer: FakeQuantizer | None = None,
        input_quantizer: FakeQuantizer | None = None,
        output_quantizer: FakeQuantizer | SectionQuantizer | None = None,
    ) -> None:
        nn.Module.__init__(self)
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.weight, self.bias = linear.weight, linear.bias
        self.weight_quantizer = weight_quantizer
        self.input_quantizer = input_quantizer
        self.output_quantizer = output_quantizer
        self.bias_noise: nn.Module | None = None  # training-time perturbation of the bias (ARNQ); never in eval

    def quantized_weight(self) -> torch.Tensor:
        return self.weight if self.weight_quantizer is None else self.weight_quantizer(self.weight)

    def effective_bias(self) -> torch.Tensor | None:
        """The bias, perturbed in training when a `bias_noise` is installed (after the weight's noise; a Linear
        without a bias then gets the perturbation alone)."""
        if self.bias_noise is not None and self.training:
            return self.bias_noise(self.bias if self.bias is not None else self.weight.new_zeros(self.out_features))
        return self.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.input_quantizer is not None:
            x = self.input_quantizer(x)
        weight = self.quantized_weight()
        y = F.linear(x, weight, self.effective_bias())
        if self.output_quantizer is not None:
            y = self.output_quantizer(y)
        return y


class QuantConv2d(nn.Conv2d):
    """Conv2d (the ViT/Swin patch embedding) with input and weight quantization points."""

    def __init__(
        self,
        conv: nn.Conv2d,
        weight_quantizer: FakeQuantizer | None = None,
        input_quantizer: FakeQuantizer | None = None,
    ) -> None:
        nn.Module.__init__(self)
        for attr in _CONV_ATTRS:
            setattr(self, attr, getattr(conv, attr))
        self.weight, self.bias = conv.weight, conv.bias
        self.weight_quantizer = weight_quantizer
        self.input_quantizer = input_quantizer

    def quantized_weight(self) -> torch.Tensor:
        return self.weight if self.weight_quantizer is None else self.weight_quantizer(self.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.input_quantizer is not None:
            x = self.input_quantizer(x)
        return self._conv_forward(x, self.quantized_weight(), self.bias)


class QuantAct(nn.Module):
    """An activation module followed by a quantization point (the GELU output)."""

    def __init__(self, act: nn.Module, quantizer: FakeQuantizer) -> None:
        super().__init__()
        self.act = act
        self.quantizer = quantizer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.quantizer(self.act(x))


class QuantProbs(nn.Module):
    """Replaces a timm attention's `attn_drop`: quantizes the softmax output, then drops."""

    def __init__(self, dropout: nn.Module, quantizer: FakeQuantizer) -> None:
        super().__init__()
        self.dropout = dropout
        self.quantizer = quantizer

    @property
    def p(self) -> float:  # timm reads attn_drop.p on its fused path
        return getattr(self.dropout, "p", 0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.quantizer(x))


def quant_eager_attention(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs,
) -> tuple[torch.Tensor, torch.Tensor]:
    """transformers' eager attention with a quantization point on the softmax output.

    Registered as the `arnq_eager` attention implementation; q, k and v are quantized
    at the outputs of the query/key/value Linears.
    """
    if scaling is None:
        scaling = query.size(-1) ** -0.5
    scores = torch.matmul(query, key.transpose(2, 3)) * scaling  # (B, H, T, T)
    if attention_mask is not None:
        scores = scores + attention_mask
    probs = F.softmax(scores, dim=-1)
    probs_quantizer = getattr(module, "probs_quantizer", None)
    if probs_quantizer is not None:
        probs = probs_quantizer(probs)
    probs = F.dropout(probs, p=dropout, training=module.training)
    out = torch.matmul(probs, value).transpose(1, 2).contiguous()  # (B, T, H, D)
    return out, probs
