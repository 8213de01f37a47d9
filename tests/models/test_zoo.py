"""The registered zoo: every model's source, data and recipe, and the per-family ImageNet preprocessing."""

from __future__ import annotations

import pytest
import torch
from PIL import Image
from torchvision import transforms

from arnq.data import IMAGENET_MEAN, IMAGENET_STD
from arnq.models import MODELS, PREPROCESS

CLUSTER_TIMM = {
    "deit_tiny": "deit_tiny_patch16_224.fb_in1k",
    "deit_small": "deit_small_patch16_224.fb_in1k",
    "deit_base": "deit_base_patch16_224.fb_in1k",
    "vit_small": "vit_small_patch16_224.augreg_in21k_ft_in1k",
    "vit_base": "vit_base_patch16_224.augreg_in21k_ft_in1k",
    "swin_tiny": "swin_tiny_patch4_window7_224.ms_in1k",
    "swin_small": "swin_small_patch4_window7_224.ms_in1k",
}
GLUE = ("sst2", "mrpc", "qnli", "rte", "cola", "qqp", "mnli")


def test_registry_lists_every_model():
    expected = {"vit_mnist", "minilm_rt", *CLUSTER_TIMM, *(f"bert_base_{t}" for t in GLUE)}
    assert set(MODELS.names()) == expected
    for name, tag in CLUSTER_TIMM.items():
        spec = MODELS.get(name)
        assert (spec.source, spec.weights_id, spec.dataset, spec.num_labels) == (
            "timm",
            tag,
            "imagenet",
            1000,
        )
    assert MODELS.get("bert_base_mnli").num_labels == 3
    assert MODELS.get("bert_base_rte").dataset == "glue_rte"
    recipe = MODELS.get("bert_base_sst2").recipe
    assert (recipe.epochs, recipe.lr, recipe.batch_size, MODELS.get("bert_base_sst2").max_length) == (
        3,
        2e-5,
        32,
        128,
    )


@pytest.mark.parametrize(
    ("family", "resize", "crop_pct", "mean", "std"),
    [
        ("deit", 256, 0.875, IMAGENET_MEAN, IMAGENET_STD),
        ("vit", 248, 0.9, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
        ("swin", 248, 0.9, IMAGENET_MEAN, IMAGENET_STD),
    ],
)
def test_preprocess_numbers_per_family(family, resize, crop_pct, mean, std):
    pre = PREPROCESS[family]
    assert (pre.resize_size, pre.input_size, pre.crop_pct, pre.mean, pre.std) == (
        resize,
        224,
        crop_pct,
        mean,
        std,
    )
    for name in [n for n, s in MODELS.items() if s.family == family and s.dataset == "imagenet"]:
        assert MODELS.get(name).preprocess == pre
    steps = pre.transform().transforms
    assert [type(t) for t in steps] == [
        transforms.Resize,
        transforms.CenterCrop,
        transforms.ToTensor,
        transforms.Normalize,
    ]
    assert steps[0].size == resize and steps[0].interpolation == transforms.InterpolationMode.BICUBIC
    assert tuple(steps[1].size) == (224, 224)
    assert tuple(steps[3].mean) == mean and tuple(steps[3].std) == std
    # a flat colour image: known size out, known normalized values
    image = Image.new("RGB", (400, 300), color=(255, 0, 128))
    out = pre.transform()(image)
    assert out.shape == (3, 224, 224)
    want = torch.tensor([(1.0 - mean[0]) / std[0], (0.0 - mean[1]) / std[1], (128 / 255 - mean[2]) / std[2]])
    assert torch.allclose(out[:, 100, 100], want, atol=1e-4)


def test_preprocess_mean_std_match_timm_cfgs():
    import timm

    for name, tag in CLUSTER_TIMM.items():
        cfg = timm.models.get_pretrained_cfg(tag)
        pre = MODELS.get(name).preprocess
        assert (pre.mean, pre.std, pre.interpolation) == (tuple(cfg.mean), tuple(cfg.std), cfg.interpolation)
        if not name.startswith("deit"):  # DeiT: 0.875 (resize 256) as in the DeiT paper; timm lists 0.9
            assert pre.crop_pct == cfg.crop_pct
