"""Pretrained weights: offline failures are fast and say what to do; local files and folders load offline."""

from __future__ import annotations

import time

import pytest
import torch

from arnq import hub
from arnq.batch import forward_logits
from arnq.cache import save_state
from arnq.models import (
    MODELS,
    WeightsUnavailableError,
    build_model,
    load_model,
    load_tokenizer,
    make_collate,
)


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
    monkeypatch.setattr(hub, "hub_reachable", lambda timeout=3.0: False)
    with pytest.raises(WeightsUnavailableError, match="unreachable") as info:
        build_model("deit_small")
    assert "deit_small_patch16_224.fb_in1k" in str(info.value)


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
