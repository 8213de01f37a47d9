"""Normalization constants and the ImageNet evaluation transform."""

from __future__ import annotations

import pytest
from torchvision import transforms

from arnq.data import IMAGENET_MEAN, IMAGENET_STD, Preprocess, default_imagenet_transform


def test_preprocess_validation():
    with pytest.raises(ValueError, match=r"Preprocess.crop_pct=1.5"):
        Preprocess(crop_pct=1.5)
    with pytest.raises(ValueError, match=r"Preprocess.std"):
        Preprocess(std=(0.5, 0.0, 0.5))


def test_default_imagenet_transform_numbers():
    resize, crop, _, normalize = default_imagenet_transform().transforms
    assert resize.size == 256 and resize.interpolation == transforms.InterpolationMode.BICUBIC
    assert tuple(crop.size) == (224, 224)
    assert tuple(normalize.mean) == IMAGENET_MEAN and tuple(normalize.std) == IMAGENET_STD
