"""Building the embedded models: packaged MiniLM weights, the vit_mnist architecture, seeded heads, collates."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from arnq.batch import forward_logits
from arnq.models import MODELS, ImageCollate, TextCollate, build_model, make_collate, package_folder
from tests.models.conftest import assert_same_global_state, global_state


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


@pytest.mark.parametrize("name", ["vit_mnist", "minilm_rt"])
def test_build_model_leaves_global_state_untouched(name, empty_hf_cache):
    torch.manual_seed(1234)
    random.seed(1234)
    np.random.seed(1234)
    before = global_state()
    model = build_model(name, seed=0)
    assert_same_global_state(before, global_state())
    # the build is still seeded: the same seed gives the same initial weights
    again = build_model(name, seed=0)
    for (key, a), b in zip(model.state_dict().items(), again.state_dict().values(), strict=True):
        assert torch.equal(a, b), key
