"""Normalization constants of the image datasets and the ImageNet evaluation transform (one definition each)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

MNIST_MEAN = 0.1307
MNIST_STD = 0.3081
FASHION_MNIST_MEAN = 0.2860  # over the 60,000 training images
FASHION_MNIST_STD = 0.3530
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INCEPTION_MEAN = (0.5, 0.5, 0.5)
INCEPTION_STD = (0.5, 0.5, 0.5)


@dataclass(frozen=True)
class Preprocess:
    """Evaluation preprocessing of an ImageNet model: resize to int(size / crop_pct), center crop, normalize."""

    input_size: int = 224
    crop_pct: float = 0.875
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    interpolation: str = "bicubic"

    def __post_init__(self) -> None:
        if not isinstance(self.input_size, int) or self.input_size < 1:
            raise ValueError(
                f"Preprocess.input_size={self.input_size!r} is invalid; use a positive int, e.g. 224"
            )
        if not 0 < self.crop_pct <= 1:
            raise ValueError(
                f"Preprocess.crop_pct={self.crop_pct!r} is invalid; use a fraction in (0, 1], e.g. 0.875"
            )
        for name in ("mean", "std"):
            value = getattr(self, name)
            if len(value) != 3:
                raise ValueError(f"Preprocess.{name}={value!r} is invalid; give one value per RGB channel")
        if any(s <= 0 for s in self.std):
            raise ValueError(f"Preprocess.std={self.std!r} is invalid; standard deviations must be > 0")
        if self.interpolation not in ("bicubic", "bilinear"):
            raise ValueError(
                f"Preprocess.interpolation={self.interpolation!r} is invalid; use 'bicubic' or 'bilinear'"
            )

    @property
    def resize_size(self) -> int:
        """Shorter-side size before the center crop (timm's floor(input_size / crop_pct))."""
        return int(math.floor(self.input_size / self.crop_pct))

    def transform(self) -> Callable[[Any], torch.Tensor]:
        """torchvision transform: PIL image -> normalized float tensor (3, input_size, input_size)."""
        from torchvision import transforms

        mode = getattr(transforms.InterpolationMode, self.interpolation.upper())
        return transforms.Compose(
            [
                transforms.Resize(self.resize_size, interpolation=mode),
                transforms.CenterCrop(self.input_size),
                transforms.ToTensor(),
                transforms.Normalize(self.mean, self.std),
            ]
        )


def default_imagenet_transform() -> Callable[[Any], torch.Tensor]:
    """Resize 256 / center-crop 224 / ImageNet normalization; pass the model family's transform instead."""
    return Preprocess().transform()
