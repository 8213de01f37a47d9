"""The registered zoo: every model's source, data and recipe, and the per-family ImageNet preprocessing."""

from __future__ import annotations

import pytest
import torch
from PIL import Image
from torchvision import transforms

from arnq.data import IMAGENET_MEAN, IMAGENET_STD
from arnq.models import MODELS, PREPROCESS, build_model

CLUSTER_TIMM = {
    "deit_tiny": "deit_tiny_patch16_224.fb_in1k",
    "deit_small": "deit_small_patch16_224.fb_in1k",
    "deit_base": "deit_base_patch16_224.fb_in1k",
    "vit_small": "vit_small_patch16_224.augreg_in21k_ft_in1k",
    "vit_base": "vit_base_patch16_224.augreg_in21k_ft_in1k",
    "swin_tiny": "swin_tiny_patch4_window7_224.ms_in1k",
    "swin_small": "swin_small_patch4_window7_224.ms_in1k",
    "swin_base": "swin_base_patch4_window7_224.ms_in1k",
}
GLUE = ("sst2", "mrpc", "qnli", "rte", "cola", "qqp", "mnli")


def test_registry_lists_every_model():
    expected = {"vit_mnist", "vit_fmnist", "minilm_rt", "minilm_tweets", *CLUSTER_TIMM, *(f"bert_base_{t}" for t in GLUE)}
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


def test_vit_fmnist_is_a_small_plain_vit_with_its_recipe():
    spec = MODELS.get("vit_fmnist")
    assert (spec.family, spec.dataset, spec.source, spec.num_labels, spec.embedded) == (
        "vit", "fashion_mnist", "scratch", 10, True)
    arch = {k: spec.arch[k] for k in ("img_size", "patch_size", "in_chans", "embed_dim", "depth", "num_heads")}
    assert arch == {"img_size": 28, "patch_size": 4, "in_chans": 1, "embed_dim": 128, "depth": 6, "num_heads": 4}
    assert (spec.arch["class_token"], spec.arch["global_pool"]) == (False, "avg")
    assert (spec.recipe.epochs, spec.recipe.batch_size, spec.recipe.label_smoothing) == (15, 128, 0.1)
    assert spec.augment.hflip and spec.augment.degrees == 0.0
    model = build_model(spec, seed=0)
    assert 0.7e6 < sum(p.numel() for p in model.parameters()) < 0.9e6
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)


def test_minilm_tweets_is_minilm_rt_with_a_three_class_head():
    rt, tweets = MODELS.get("minilm_rt"), MODELS.get("minilm_tweets")
    assert (tweets.dataset, tweets.num_labels, tweets.embedded) == ("tweets", 3, True)
    assert (tweets.source, tweets.weights_id, tweets.max_length) == (rt.source, rt.weights_id, rt.max_length)


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
