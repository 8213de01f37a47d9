"""Activation sites of the tiny ViT, Swin and BERT: counts, shapes, gradients and hook cleanup."""

import pytest
import torch

from arnq.arms.sites import SITE_KINDS, capture, find_sites, site_kind
from arnq.batch import forward_logits
from arnq.quant import QuantConfig, calibrate, convert, prepare
from tests.conftest import image_batch, text_batch, tiny_bert, tiny_swin, tiny_vit

# vit: 2 blocks; swin: 2 + 2 blocks; bert: 2 layers (two LayerNorms each)
EXPECTED_COUNTS = {
    "vit": {"post_ln": 4, "fc2_in": 2, "residual": 2},
    "swin": {"post_ln": 8, "fc2_in": 4, "residual": 4},
    "bert": {"post_ln": 4, "fc2_in": 2, "ffn_out": 2, "residual": 4},
}
# (T, C) of each kind for the conftest inputs: vit 16 patches + cls, swin stage 0 is 16x16 tokens
EXPECTED_FIRST_SHAPE = {
    "vit": {"post_ln": (17, 64), "fc2_in": (17, 256), "residual": (17, 64)},
    "swin": {"post_ln": (256, 32), "fc2_in": (256, 128), "residual": (256, 32)},
    "bert": {"post_ln": (16, 64), "fc2_in": (16, 128), "ffn_out": (16, 64), "residual": (16, 64)},
}


def _no_hooks(model):
    return all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def _counts(sites):
    counts = {}
    for s in sites:
        counts[s.kind] = counts.get(s.kind, 0) + 1
    return counts


def test_site_counts_and_names(family_case):
    family, build, _ = family_case
    sites = find_sites(build())
    assert _counts(sites) == EXPECTED_COUNTS[family]
    assert len({s.name for s in sites}) == len(sites)
    assert all(site_kind(s.name) == s.kind for s in sites)
    assert _counts(find_sites(build(), ["fc2_in"])) == {"fc2_in": EXPECTED_COUNTS[family]["fc2_in"]}


def test_named_modules_are_the_documented_ones():
    vit = {s.name: s.hook for s in find_sites(tiny_vit())}
    assert vit["post_ln/blocks.0.norm2"] == "output"
    assert vit["fc2_in/blocks.1.mlp.fc2"] == "input"
    assert vit["residual/blocks.1"] == "output"
    bert = {s.name: s.hook for s in find_sites(tiny_bert())}
    assert bert["residual/bert.encoder.layer.0.attention.output.LayerNorm"] == "input"
    assert bert["ffn_out/bert.encoder.layer.1.output.dense"] == "output"
    assert bert["fc2_in/bert.encoder.layer.1.output.dense"] == "input"
    assert "post_ln/layers.1.blocks.1.norm1" in {s.name for s in find_sites(tiny_swin())}


def test_captured_shapes_are_b_t_c(family_case):
    family, build, make_inputs = family_case
    model = build()
    with capture(model) as acts:
        forward_logits(model, make_inputs(n=3))
    assert len(acts) == sum(EXPECTED_COUNTS[family].values())
    for kind, (t, c) in EXPECTED_FIRST_SHAPE[family].items():
        first = next(name for name in acts if site_kind(name) == kind)
        assert tuple(acts[first].shape) == (3, t, c), first
    assert _no_hooks(model)


def test_captured_values_match_the_module_computation():
    model = tiny_vit()
    x = image_batch(n=2)
    with capture(model, find_sites(model, ["post_ln", "fc2_in"])) as acts:
        forward_logits(model, x)
    with torch.no_grad():
        tokens = model.patch_embed(x)
        tokens = model._pos_embed(tokens)  # (B, T, C) with the cls token
        block = model.blocks[0]
        ln1 = block.norm1(tokens)
        h = tokens + block.attn(ln1)
        fc2_in = block.mlp.act(block.mlp.fc1(block.norm2(h)))
    torch.testing.assert_close(acts["post_ln/blocks.0.norm1"], ln1)
    torch.testing.assert_close(acts["fc2_in/blocks.0.mlp.fc2"], fc2_in)


def test_captured_tensors_carry_gradients():
    model = tiny_bert()
    with capture(model, find_sites(model, ["fc2_in"])) as acts:
        forward_logits(model, text_batch(n=2))
        loss = sum(a.pow(2).mean() for a in acts.values())
    loss.backward()
    grad = model.bert.encoder.layer[0].intermediate.dense.weight.grad
    assert grad is not None and grad.abs().sum() > 0


def test_capture_on_a_prepared_and_converted_model(family_case):
    family, build, make_inputs = family_case
    model = prepare(build(), QuantConfig(w_bits=8, a_bits=8))
    calibrate(model, [(make_inputs(n=2), torch.zeros(2))])
    convert(model)
    sites = find_sites(model)
    assert _counts(sites) == EXPECTED_COUNTS[family]
    with capture(model, sites) as acts:
        forward_logits(model, make_inputs(n=2))
    assert set(acts) == {s.name for s in sites}
    assert all(torch.isfinite(a).all() for a in acts.values())
    assert _no_hooks(model)


def test_sites_found_before_prepare_are_refused():
    model = tiny_vit()
    stale = find_sites(model, ["fc2_in"])
    prepare(model, QuantConfig())
    with pytest.raises(ValueError, match="after prepare"):
        with capture(model, stale):
            pass


def test_hooks_removed_after_context_and_on_error():
    model = tiny_vit()
    with capture(model) as acts:
        assert any(m._forward_hooks for m in model.modules())
        assert any(m._forward_pre_hooks for m in model.modules())
        forward_logits(model, image_batch(n=1))
    assert acts and _no_hooks(model)
    with pytest.raises(RuntimeError, match="boom"):
        with capture(model):
            raise RuntimeError("boom")
    assert _no_hooks(model)


def test_unknown_kind_lists_valid_kinds():
    with pytest.raises(ValueError, match=", ".join(SITE_KINDS)):
        find_sites(tiny_vit(), ["post_lm"])


def test_kind_absent_from_family():
    assert find_sites(tiny_vit(), ["ffn_out", "fc2_in"]) == find_sites(tiny_vit(), ["fc2_in"])
    with pytest.raises(ValueError, match="none exist in a vit model"):
        find_sites(tiny_vit(), ["ffn_out"])
