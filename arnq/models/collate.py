"""Collate functions turning dataset items into `(inputs, labels)` batches for `arnq.batch.forward_logits`."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import torch

from arnq.models.build import load_tokenizer
from arnq.models.registry import ModelSpec, resolve_spec


class ImageCollate:
    """(image tensor, label) items -> (stacked images, int64 labels)."""

    def __call__(self, items: Sequence[tuple[torch.Tensor, int]]) -> tuple[torch.Tensor, torch.Tensor]:
        images = torch.stack([x for x, _ in items])
        return images, torch.tensor([int(y) for _, y in items], dtype=torch.long)


class TextCollate:
    """(text or (text_a, text_b), label) items -> (padded token tensors dict, int64 labels)."""

    def __init__(self, tokenizer: Any, max_length: int) -> None:
        self.tokenizer = tokenizer
        self.max_length = max_length

    def __call__(self, items: Sequence[tuple[Any, int]]) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        texts = [t for t, _ in items]
        pairs = isinstance(texts[0], (tuple, list))
        args = ([a for a, _ in texts], [b for _, b in texts]) if pairs else (list(texts),)
        enc = self.tokenizer(
            *args, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        return dict(enc), torch.tensor([int(y) for _, y in items], dtype=torch.long)


def make_collate(
    spec: ModelSpec | str, tokenizer: Any = None, weights: str | os.PathLike | None = None
) -> Callable:
    """Collate for `spec`: images are stacked; texts tokenized (padding, truncation to spec.max_length)."""
    spec = resolve_spec(spec)
    if spec.modality == "image":
        return ImageCollate()
    if tokenizer is None:
        tokenizer = load_tokenizer(spec, weights)
    return TextCollate(tokenizer, int(spec.max_length or 512))
