"""Module swap on tiny random-init ViT, Swin and BERT: exactness when off, every point reachable."""

import copy

import pytest
import torch

from arnq.batch import forward_logits
from arnq.quant import (
    POINTS,
    QuantConfig,
    calibrate,
    convert,
    point_summary,
    prepare,
    quantization_disabled,
    quantizers,
    set_quantizing,
    sqnr_db,
)
from arnq.quant.modules import QuantLinear

# Expected live points per kind for the tiny models in conftest (all points on).
EXPECTED_POINTS = {
    # vit: 2 blocks x (qkv, proj, fc1, fc2) + head = 9 Linears, + patch-embed conv
    "vit": {"weight": 10, "linear_in": 10, "attn_q": 2, "attn_k": 2, "attn_v": 2, "attn_probs": 2, "gelu_out": 2},
    # swin: 4 blocks x 4 Linears + 1 patch-merging reduction + head = 18 Linears, + patch-embed conv
    "swin": {"weight": 19, "linear_in": 19, "attn_q": 4, "attn_k": 4, "attn_v": 4, "attn_probs": 4, "gelu_out": 4},
    # bert: 2 layers x 6 Linears + pooler + classifier
    "bert": {"weight": 14, "linear_in": 14, "attn_q": 2, "attn_k": 2, "attn_v": 2, "attn_probs": 2, "gelu_out": 2},
}


def _run(model, inputs):
    with torch.no_grad():
        return forward_logits(model, inputs)


def test_prepared_model_with_quantization_off_is_exact(family_case):
    family, build, make_inputs = family_case
    model, inputs = build(), make_inputs()
    reference = _run(model, inputs)
    prepared = prepare(copy.deepcopy(model), QuantConfig(w_bits=4, a_bits=4, points=POINTS))
    assert point_summary(prepared) == EXPECTED_POINTS[family]
    torch.testing.assert_close(_run(prepared, inputs), reference, atol=1e-6, rtol=0)
    # after calibration and conversion, switching quantization off restores the FP output
    calibrate(prepared, [(make_inputs(seed=2), torch.zeros(8))])
    convert(prepared)
    assert (_run(prepared, inputs) - reference).abs().max() > 1e-4
    with quantization_disabled(prepared):
        torch.testing.assert_close(_run(prepared, inputs), reference, atol=1e-6, rtol=0)


def test_state_dict_keys_unchanged(family_case):
    _, build, _ = family_case
    model = build()
    prepared = prepare(copy.deepcopy(model), QuantConfig(points=POINTS))
    assert list(prepared.state_dict()) == list(model.state_dict())


@pytest.mark.parametrize("point", POINTS)
def test_each_point_individually(family_case, point):
    family, build, make_inputs = family_case
    model, inputs = build(), make_inputs()
    reference = _run(model, inputs)
    prepared = prepare(copy.deepcopy(model), QuantConfig(w_bits=3, a_bits=3, edge_bits=None, points=(point,)))
    summary = point_summary(prepared)
    assert set(summary) == {point}
    calibrate(prepared, [(inputs, torch.zeros(8))])
    convert(prepared)
    changed = (_run(prepared, inputs) - reference).abs().max().item()
    assert changed > 1e-6, f"{family}: quantizing only {point} did not change the output"


def test_sqnr_of_logits_rises_with_bits(family_case):
    family, build, make_inputs = family_case
    model, calib, evaluation = build(), make_inputs(seed=3), make_inputs(seed=4)
    reference = _run(model, evaluation)
    sqnrs = {}
    for bits in (4, 6, 8):
        prepared = prepare(copy.deepcopy(model), QuantConfig(w_bits=bits, a_bits=bits, edge_bits=bits))
        calibrate(prepared, [(calib, torch.zeros(8))])
        convert(prepared)
        sqnrs[bits] = sqnr_db(reference, _run(prepared, evaluation))
    assert sqnrs[4] < sqnrs[6] < sqnrs[8], sqnrs
    assert sqnrs[8] > 15, sqnrs


def test_padding_is_excluded_from_activation_ranges():
    from tests.conftest import text_batch, tiny_bert

    model = tiny_bert()
    short = {k: v[:1, :10] for k, v in text_batch(n=1).items()}
    padded = {k: torch.cat([v, torch.zeros(1, 6, dtype=v.dtype)], dim=1) for k, v in short.items()}
    ranges = []
    for inputs in (short, padded):
        prepared = prepare(copy.deepcopy(model), QuantConfig())
        calibrate(prepared, [(inputs, torch.zeros(1))])
        ranges.append({n: (q.scale.clone(), q.zero_point.clone()) for n, q in quantizers(prepared) if q.point != "weight"})
    for name, (scale, zp) in ranges[0].items():
        torch.testing.assert_close(ranges[1][name][0], scale, rtol=1e-4, atol=1e-7, msg=name)
        assert abs(ranges[1][name][1] - zp).max() <= 1, name


def test_weight_only_leaves_activations_in_fp():
    from tests.conftest import tiny_vit

    prepared = prepare(tiny_vit(), QuantConfig(w_bits=4, a_bits=16))
    assert set(point_summary(prepared)) == {"weight"}


def test_per_token_dynamic_needs_no_calibration():
    from tests.conftest import image_batch, tiny_vit

    model = tiny_vit()
    prepared = prepare(copy.deepcopy(model), QuantConfig(a_granularity="token", points=("linear_in",)))
    set_quantizing(prepared, True)
    out = _run(prepared, image_batch())
    assert sqnr_db(_run(model, image_batch()), out) > 25


def test_convert_before_calibrate_is_refused():
    from tests.conftest import tiny_vit

    prepared = prepare(tiny_vit(), QuantConfig())
    with pytest.raises(RuntimeError, match="calibrate"):
        convert(prepared)


def test_prepare_twice_and_unknown_models_are_refused():
    from tests.conftest import tiny_vit

    prepared = prepare(tiny_vit(), QuantConfig())
    with pytest.raises(ValueError, match="already prepared"):
        prepare(prepared, QuantConfig())
    with pytest.raises(ValueError, match="unsupported model"):
        prepare(torch.nn.Sequential(torch.nn.Linear(2, 2)), QuantConfig())


def test_skip_patterns_keep_modules_in_fp():
    from tests.conftest import tiny_vit

    prepared = prepare(tiny_vit(), QuantConfig(skip=("blocks.0.*",)))
    assert not isinstance(prepared.blocks[0].mlp.fc1, QuantLinear)
    assert isinstance(prepared.blocks[1].mlp.fc1, QuantLinear)


def test_edge_layers_use_edge_bits():
    from tests.conftest import tiny_vit

    prepared = prepare(tiny_vit(), QuantConfig(w_bits=4, a_bits=4, edge_bits=8))
    assert prepared.head.weight_quantizer.spec.bits == 8
    assert prepared.patch_embed.proj.weight_quantizer.spec.bits == 8
    assert prepared.blocks[0].attn.qkv.weight_quantizer.spec.bits == 4


@pytest.mark.parametrize(
    "kwargs, match",
    [({"w_bits": 1}, "w_bits"), ({"a_bits": 9}, "a_bits"), ({"points": ("qkv",)}, "valid points"),
     ({"a_observer": "mse"}, "a_observer"), ({"a_granularity": "channel"}, "a_granularity")],
)
def test_quant_config_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        QuantConfig(**kwargs)
