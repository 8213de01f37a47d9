"""Build a registered model's FP network (seeded init of new layers) and load its tokenizer."""

from __future__ import annotations

import os
from typing import Any

from torch import nn

from arnq.models.registry import ModelSpec, resolve_spec
from arnq.models.weights import (
    hf_from_pretrained,
    hf_location,
    offline_reason,
    timm_weights_file,
    weights_unavailable,
)
from arnq.scoped import seeded


def build_model(
    spec: ModelSpec | str, *, seed: int = 0, weights: str | os.PathLike | None = None
) -> nn.Module:
    """The FP model of `spec` before any FP training (seeded init of new layers), in eval mode.

    `weights` replaces the spec's pretrained source: a timm weights file for timm models,
    a local HF model folder for text models. Models trained from scratch take their
    trained weights through `load_model(weights=...)` instead. The caller's global RNG
    state is left as it was.
    """
    spec = resolve_spec(spec)
    with seeded(seed, deterministic=False):
        if spec.source == "scratch":
            return _build_scratch(spec).eval()
        if spec.source == "timm":
            return _build_timm(spec, weights).eval()
        return _build_bert(spec, weights).eval()


def _build_scratch(spec: ModelSpec) -> nn.Module:
    """A randomly initialised timm VisionTransformer with the spec's `arch`."""
    from timm.models.vision_transformer import VisionTransformer

    return VisionTransformer(**dict(spec.arch))


def _build_timm(spec: ModelSpec, weights: str | os.PathLike | None) -> nn.Module:
    """The pretrained timm model: from `weights`, the HF cache, or a download when the hub is usable."""
    import timm

    tag = str(spec.weights_id)
    file = timm_weights_file(spec, weights)
    if file is not None:
        return timm.create_model(tag, pretrained=True, pretrained_cfg_overlay={"file": file})
    reason = offline_reason()
    if reason is not None:
        raise weights_unavailable(spec, reason)
    try:
        return timm.create_model(tag, pretrained=True)
    except (OSError, RuntimeError) as exc:
        raise weights_unavailable(spec, f"download failed: {exc}") from exc


def _build_bert(spec: ModelSpec, weights: str | os.PathLike | None) -> nn.Module:
    """The pretrained BERT encoder with a new `num_labels` classification head (eager attention)."""
    from transformers import BertForSequenceClassification

    location, local = hf_location(spec, weights)
    return hf_from_pretrained(
        BertForSequenceClassification.from_pretrained,
        spec,
        location,
        local,
        num_labels=spec.num_labels,
        attn_implementation="eager",
    )


def load_tokenizer(spec: ModelSpec | str, weights: str | os.PathLike | None = None) -> Any:
    """The HF tokenizer of a text model (from `weights`, its package folder or the hub / HF cache)."""
    from transformers import AutoTokenizer

    spec = resolve_spec(spec)
    if spec.modality != "text":
        raise ValueError(f"model '{spec.name}' is an image model ({spec.family}); it has no tokenizer")
    location, local = hf_location(spec, weights)
    return hf_from_pretrained(AutoTokenizer.from_pretrained, spec, location, local)
