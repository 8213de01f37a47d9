"""FP models ready for PTQ: trained weights given, FP training cached, verified and rebuilt; the cache key."""

from __future__ import annotations

import dataclasses
import hashlib
import time

import pytest
import torch

from arnq.batch import forward_logits
from arnq.cache import canonical_json, load_state, save_state, validate_entry
from arnq.data import DataConfig, load_data
from arnq.models import (
    MODELS,
    WeightsUnavailableError,
    build_model,
    fp_cache_spec,
    load_model,
    make_collate,
    train_fp,
)
from arnq.train import TrainConfig
from tests.models.conftest import assert_same_global_state, global_state


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


TINY_VIT = dataclasses.replace(  # vit_mnist shrunk to one narrow block, a few steps, no augmentation
    MODELS.get("vit_mnist"), name="tiny_vit_mnist_test", description="test-only tiny ViT",
    arch={**MODELS.get("vit_mnist").arch, "embed_dim": 16, "depth": 1, "num_heads": 2},
    recipe=TrainConfig(epochs=1, lr=3e-3, batch_size=64, max_steps=8, eval_every_epoch=False), augment=None, cost=None,
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


# canonical JSON of the cache key without library versions, the weights package version and the code
# fingerprint; a change invalidates every cached FP checkpoint of the model, so bump CACHE_FORMAT deliberately
# and re-pin
FP_CACHE_SPEC_SHA256 = {
    "vit_mnist": "ebacb448f53d458ad8a0939ad8a1abe27294d369e629861460b26d6e2d468004",
    "minilm_rt": "0428b92def1eb58c1f6f169739b23cde3cd3580d341e180d198bf6f3c2d34a7a",
}


@pytest.mark.parametrize("name", sorted(FP_CACHE_SPEC_SHA256))
def test_fp_cache_spec_is_pinned(name):
    spec = MODELS.get(name)
    key = fp_cache_spec(spec, seed=0, data=load_data(DataConfig(spec.dataset, seed=0)))
    assert set(key) == {"format", "model", "weights", "weights_package", "data", "seed", "versions", "code"}
    stable = {k: v for k, v in key.items() if k not in ("versions", "weights_package", "code")}
    assert hashlib.sha256(canonical_json(stable).encode()).hexdigest() == FP_CACHE_SPEC_SHA256[name]


def test_train_fp_leaves_global_state_untouched():
    data = load_data(DataConfig("mnist5k", calib_size=8))
    model = build_model(TINY_VIT, seed=0)
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    flags = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
    )
    torch.use_deterministic_algorithms(False)  # train_classifier switches it on
    try:
        torch.manual_seed(99)
        before = global_state()
        info = train_fp(TINY_VIT, model, data, make_collate(TINY_VIT), seed=0)
        assert_same_global_state(before, global_state())
    finally:
        torch.use_deterministic_algorithms(flags[0], warn_only=flags[1])
    assert info["steps"] == 8 and 0.0 <= info["test_accuracy"] <= 1.0
    assert not torch.equal(model.state_dict()["head.weight"], initial["head.weight"])


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
