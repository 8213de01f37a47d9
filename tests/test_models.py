"""Model registry: listings, preprocessing, offline weights errors, embedded models, FP caching."""

from __future__ import annotations

import dataclasses
import time

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from torchvision import transforms

from arnq import models as models_mod
from arnq.batch import forward_logits
from arnq.cache import load_state, save_state, validate_entry
from arnq.data import IMAGENET_MEAN, IMAGENET_STD
from arnq.models import (
    MODELS,
    PREPROCESS,
    ImageCollate,
    ModelSpec,
    Preprocess,
    TextCollate,
    WeightsUnavailableError,
    build_model,
    describe_models,
    load_model,
    load_tokenizer,
    make_collate,
    package_folder,
)
from arnq.registry import UnknownNameError
from arnq.train import TrainConfig

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


@pytest.fixture
def empty_hf_cache(monkeypatch, tmp_path):
    """Offline hub with an empty HF cache, whatever the machine has cached."""
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    return tmp_path / "hf-cache"


# ---------------------------------------------------------------------------------------------
# registry and listing


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


def test_unknown_model_did_you_mean():
    with pytest.raises(UnknownNameError, match="Did you mean 'vit_mnist'"):
        MODELS.get("vit_mnst")
    with pytest.raises(ValueError, match="Did you mean 'deit_tiny'"):
        load_model("deit_tiyn")


def test_describe_models_rows():
    rows = {r["name"]: r for r in describe_models()}
    assert set(rows) == set(MODELS.names())
    assert {n for n, r in rows.items() if r["embedded"]} == {"vit_mnist", "minilm_rt"}
    assert rows["vit_mnist"]["weights"] == "trained from scratch"
    assert rows["deit_tiny"]["fp_training"] == "none (pretrained)"
    assert rows["minilm_rt"]["fp_training"] == "2 ep, lr 0.0001, bs 32 on 4000 examples"
    assert all(
        set(r) == {"name", "family", "dataset", "embedded", "weights", "fp_training", "description"}
        for r in rows.values()
    )


def test_model_spec_validation_names_field():
    base = MODELS.get("vit_mnist")
    with pytest.raises(ValueError, match=r"family='cnn' is invalid"):
        dataclasses.replace(base, family="cnn")
    with pytest.raises(ValueError, match=r"recipe=None is invalid"):
        dataclasses.replace(base, recipe=None)
    with pytest.raises(ValueError, match=r"max_length=None is invalid"):
        dataclasses.replace(MODELS.get("minilm_rt"), max_length=None)
    with pytest.raises(ValueError, match=r"weights_id='nofolder' is invalid"):
        dataclasses.replace(MODELS.get("minilm_rt"), weights_id="nofolder")
    with pytest.raises(TypeError):
        base.arch["depth"] = 12  # frozen arch mapping


# ---------------------------------------------------------------------------------------------
# preprocessing


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


def test_preprocess_validation():
    with pytest.raises(ValueError, match=r"Preprocess.crop_pct=1.5"):
        Preprocess(crop_pct=1.5)
    with pytest.raises(ValueError, match=r"Preprocess.std"):
        Preprocess(std=(0.5, 0.0, 0.5))


# ---------------------------------------------------------------------------------------------
# pretrained weights: offline failures are fast and say what to do


@pytest.mark.parametrize("name", ["deit_tiny", "vit_base", "swin_small", "bert_base_sst2"])
def test_offline_pretrained_fails_fast_with_instructions(name, empty_hf_cache, tmp_path):
    spec = MODELS.get(name)
    start = time.perf_counter()
    with pytest.raises(WeightsUnavailableError) as info:
        load_model(name, cache_root=tmp_path / "cache")
    assert time.perf_counter() - start < 10
    msg = str(info.value)
    assert f"model '{name}'" in msg and str(spec.weights_id) in msg
    assert "HF_HUB_OFFLINE=1" in msg
    assert "weights=PATH" in msg and "--weights" in msg and "Hugging Face cache" in msg
    assert not (tmp_path / "cache").exists()  # failed before any data or training work


def test_unreachable_hub_fails_fast(monkeypatch, empty_hf_cache):
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(models_mod, "hub_reachable", lambda timeout=3.0: False)
    with pytest.raises(WeightsUnavailableError, match="unreachable") as info:
        build_model("deit_small")
    assert "deit_small_patch16_224.fb_in1k" in str(info.value)


def test_hub_offline_reads_env_at_call_time(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    assert not models_mod.hub_offline()
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "true")
    assert models_mod.hub_offline()


def test_timm_weights_file_loads_offline(empty_hf_cache, tmp_path):
    import timm

    torch.manual_seed(5)
    reference = timm.create_model("deit_tiny_patch16_224", pretrained=False)
    path = tmp_path / "deit_tiny.safetensors"
    save_state(path, reference.state_dict())
    model = build_model("deit_tiny", weights=path)
    assert not model.training
    for (name, a), b in zip(reference.state_dict().items(), model.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    with pytest.raises(WeightsUnavailableError, match="is not a file"):
        build_model("deit_tiny", weights=tmp_path / "missing.safetensors")


def test_hf_weights_folder_for_bert(empty_hf_cache, tmp_path):
    from transformers import BertConfig, BertForSequenceClassification

    folder = tmp_path / "tiny-bert"
    cfg = BertConfig(
        vocab_size=30522, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64
    )
    torch.manual_seed(0)
    BertForSequenceClassification(cfg).bert.save_pretrained(folder)
    load_tokenizer("minilm_rt").save_pretrained(folder)
    model = build_model("bert_base_mnli", weights=folder)
    assert model.config.num_labels == 3 and model.config._attn_implementation == "eager"
    collate = make_collate("bert_base_mnli", weights=folder)
    inputs, labels = collate([(("a premise", "a hypothesis"), 2), (("another premise here", "no"), 0)])
    assert forward_logits(model, inputs).shape == (2, 3)
    assert labels.tolist() == [2, 0]
    with pytest.raises(WeightsUnavailableError, match="no config.json"):
        build_model("bert_base_mnli", weights=tmp_path)


# ---------------------------------------------------------------------------------------------
# embedded models


def test_minilm_rt_builds_from_packaged_weights_offline(empty_hf_cache):
    folder = package_folder(MODELS.get("minilm_rt").weights_id)
    assert (folder / "model.safetensors").is_file()
    model = build_model("minilm_rt", seed=0)
    assert type(model).__name__ == "BertForSequenceClassification"
    assert model.config._attn_implementation == "eager" and model.config.num_labels == 2
    assert not model.training
    packaged = load_file(str(folder / "model.safetensors"))
    key = next(k for k in packaged if k.endswith("embeddings.word_embeddings.weight"))
    assert torch.equal(model.bert.embeddings.word_embeddings.weight, packaged[key])  # pretrained, not random
    collate = make_collate("minilm_rt")
    assert isinstance(collate, TextCollate) and collate.max_length == 64
    inputs, labels = collate([("a gripping, beautifully acted film", 1), ("dull", 0)])
    assert set(inputs) >= {"input_ids", "attention_mask"}
    assert inputs["input_ids"].shape[0] == 2 and inputs["input_ids"][0, 0] == 101  # [CLS]
    assert inputs["attention_mask"][1].sum() == 3  # [CLS] dull [SEP]
    assert labels.dtype == torch.long and labels.tolist() == [1, 0]
    with torch.inference_mode():
        logits = forward_logits(model, inputs)
    assert logits.shape == (2, 2) and torch.isfinite(logits).all()
    long_inputs, _ = collate([("word " * 500, 1)])
    assert long_inputs["input_ids"].shape == (1, 64)  # truncated to max_length
    # the new head is seeded
    same = build_model("minilm_rt", seed=0).classifier.weight
    other = build_model("minilm_rt", seed=1).classifier.weight
    assert torch.equal(same, model.classifier.weight) and not torch.equal(other, same)


def test_image_collate_and_vit_mnist_architecture():
    from timm.layers import Attention, Mlp
    from timm.models.vision_transformer import Block, VisionTransformer

    items = [(torch.randn(1, 28, 28), 3), (torch.randn(1, 28, 28), 7), (torch.randn(1, 28, 28), 0)]
    images, labels = make_collate("vit_mnist")(items)
    assert isinstance(make_collate("vit_mnist"), ImageCollate)
    assert images.shape == (3, 1, 28, 28) and labels.tolist() == [3, 7, 0] and labels.dtype == torch.long
    model = build_model("vit_mnist", seed=0)
    assert type(model) is VisionTransformer
    assert sum(isinstance(m, Block) for m in model.modules()) == 4
    assert sum(isinstance(m, Attention) for m in model.modules()) == 4
    assert sum(isinstance(m, Mlp) for m in model.modules()) == 4
    with torch.inference_mode():
        assert forward_logits(model, images).shape == (3, 10)


def test_load_model_with_trained_weights_skips_training(tmp_path):
    reference = build_model("vit_mnist", seed=3)
    path = tmp_path / "vit_mnist_fp.safetensors"
    save_state(path, reference.state_dict())
    before = torch.get_num_threads()
    loaded = load_model(
        "vit_mnist", weights=path, cache_root=tmp_path / "cache", calib_size=64, num_threads=1
    )
    assert torch.get_num_threads() == before
    assert loaded.checkpoint == path and loaded.cache_hit is None and loaded.fp_train_seconds is None
    assert not (tmp_path / "cache").exists()
    for a, b in zip(reference.state_dict().values(), loaded.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert (len(loaded.data.train), len(loaded.data.test), len(loaded.data.calib)) == (4000, 1000, 64)
    inputs, labels = loaded.collate([loaded.data.calib[i] for i in range(5)])
    assert forward_logits(loaded.model, inputs).shape == (5, 10) and labels.shape == (5,)
    assert not loaded.model.training
    with pytest.raises(WeightsUnavailableError, match="not a file"):
        load_model("vit_mnist", weights=tmp_path / "nope.safetensors", cache_root=tmp_path / "cache")


TINY_VIT = ModelSpec(
    name="tiny_vit_mnist_test",
    family="vit",
    dataset="mnist5k",
    description="test-only tiny ViT",
    embedded=True,
    source="scratch",
    num_labels=10,
    arch={
        "img_size": 28,
        "patch_size": 7,
        "in_chans": 1,
        "num_classes": 10,
        "embed_dim": 16,
        "depth": 1,
        "num_heads": 2,
        "mlp_ratio": 2.0,
    },
    recipe=TrainConfig(epochs=1, lr=3e-3, batch_size=64, max_steps=8, eval_every_epoch=False),
)


def test_fp_checkpoint_cached_verified_and_rebuilt(monkeypatch, tmp_path):
    monkeypatch.setitem(MODELS._entries, TINY_VIT.name, TINY_VIT)
    cache = tmp_path / "cache"
    first = load_model(TINY_VIT.name, cache_root=cache, calib_size=32)
    assert first.cache_hit is False and first.checkpoint.is_file()
    assert first.checkpoint.parent.parent == cache / "fp_models"
    assert 0.0 <= first.fp_accuracy <= 1.0 and first.fp_train_seconds > 0
    weights = {k: v.clone() for k, v in first.model.state_dict().items()}
    assert not torch.equal(weights["head.weight"], build_model(TINY_VIT, seed=0).state_dict()["head.weight"])

    second = load_model(TINY_VIT.name, cache_root=cache, calib_size=32)
    assert second.cache_hit is True and second.checkpoint == first.checkpoint
    assert second.fp_accuracy == first.fp_accuracy
    for k, v in second.model.state_dict().items():
        assert torch.equal(v, weights[k]), k

    other_seed = load_model(TINY_VIT.name, cache_root=cache, calib_size=32, seed=1)
    assert other_seed.cache_hit is False and other_seed.checkpoint != first.checkpoint

    raw = bytearray(first.checkpoint.read_bytes())
    raw[-5] ^= 0xFF
    first.checkpoint.write_bytes(bytes(raw))
    assert "sha256 mismatch" in validate_entry(first.checkpoint.parent)
    third = load_model(TINY_VIT.name, cache_root=cache, calib_size=32)
    assert third.cache_hit is False  # corruption detected, retrained
    for k, v in load_state(third.checkpoint).items():
        assert torch.equal(v, weights[k]), k  # deterministic retraining gives the same weights


# ---------------------------------------------------------------------------------------------
# real FP training of the embedded models (slow)


@pytest.mark.slow
def test_vit_mnist_trains_and_second_load_hits_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("ARNQ_CACHE", str(tmp_path / "cache"))
    start = time.perf_counter()
    first = load_model("vit_mnist", num_threads=2)
    first_s = time.perf_counter() - start
    assert first.cache_hit is False
    assert first.fp_accuracy >= 0.93, first.fp_accuracy
    assert first.checkpoint.is_relative_to(tmp_path / "cache")
    print(f"vit_mnist: FP accuracy {first.fp_accuracy:.4f}, training {first.fp_train_seconds:.1f} s")
    start = time.perf_counter()
    second = load_model("vit_mnist", num_threads=2)
    second_s = time.perf_counter() - start
    assert second.cache_hit is True and second.fp_accuracy == first.fp_accuracy
    assert second_s < 10 and second_s < first_s / 5
    for a, b in zip(first.model.state_dict().values(), second.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)


@pytest.mark.slow
def test_minilm_rt_finetunes_offline(monkeypatch, tmp_path, empty_hf_cache):
    monkeypatch.setenv("ARNQ_CACHE", str(tmp_path / "cache"))
    loaded = load_model("minilm_rt", num_threads=2)
    assert loaded.cache_hit is False
    assert loaded.fp_accuracy >= 0.80, loaded.fp_accuracy
    print(f"minilm_rt: FP accuracy {loaded.fp_accuracy:.4f}, training {loaded.fp_train_seconds:.1f} s")
    again = load_model("minilm_rt", num_threads=2)
    assert again.cache_hit is True and again.fp_accuracy == loaded.fp_accuracy
