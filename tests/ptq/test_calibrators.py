"""Registry-parametrized: every PTQ method runs on tiny ViT, Swin and BERT with an SQNR floor rising with bits."""

import copy

import pytest
import torch

from arnq.batch import forward_logits
from arnq.ptq import PTQ_METHODS, MinMaxConfig, parse_bits, ptq_config, quantize_
from arnq.quant import point_summary, quantizers, sqnr_db
from tests.conftest import FAMILY_CASES

SQNR_FLOOR_DB = {"W8A8": 15.0, "W6A6": 8.0, "W4A4": 10.0}
#: W4A4 floor of the tiny random BERT, whose 4-bit activations leave little signal: the methods measure 0.3 (AdaRound)
#: to 7.5 dB (OMSE) there, min-max with 4x too wide steps -1.5 dB
W4A4_FLOOR_BERT_DB = -1.0
# The SQNR is of the raw logits: on the tiny random ViT they vary little between inputs, so a model that output
# their mean would score ~29 dB and pass; the floors catch wrong steps (test_the_w4a4_floor_fails_a_broken_calibrator).
#: methods whose softmax grid does not refine from 6 to 8 bits: W8A8 need only match W6A6 (within 1 dB) and its floor
SATURATING = {
    "fq_vit": "attention probabilities at 4 bits whatever the bits axis says (Log-Int-Softmax)",
    "repq_vit": "log-sqrt2 softmax: its top levels (1, 0.71, 0.5, ...) are the same at 6 and 8 bits",
    "erq": "RepQ-ViT's quantizers, log-sqrt2 softmax included",
    "adalog": "log-base softmax and post-GELU quantizers on RepQ-ViT's: tiny BERT 16.37 dB at W6A6, 16.33 at W8A8",
}


@pytest.mark.parametrize("method", PTQ_METHODS.names())
def test_method_sqnr_rises_with_bits(family_case, method):
    family, build, make_inputs = family_case
    model = build()
    if family == "vit":  # a trained ViT's class token is far from 0; at init (std 0.02) a quantizer on the residual
        with torch.no_grad():  # stream (fq_vit's LayerNorm inputs) would erase it, and with it the logits
            model.cls_token.normal_(std=0.3, generator=torch.Generator().manual_seed(0))
    calib = [(make_inputs(seed=10 + i), torch.zeros(8)) for i in range(2)]
    evaluation = make_inputs(seed=20)
    with torch.no_grad():
        reference = forward_logits(model, evaluation)
    sqnrs = {}
    for bits in ("W4A4", "W6A6", "W8A8"):
        q = quantize_(copy.deepcopy(model), ptq_config(method, bits, **PTQ_METHODS.get(method).smoke_params), calib)
        with torch.no_grad():
            sqnrs[bits] = sqnr_db(reference, forward_logits(q, evaluation))
        floor = _floor(family, "W6A6" if bits == "W8A8" and method in SATURATING else bits)
        assert sqnrs[bits] > floor, (family, method, sqnrs)
    assert sqnrs["W4A4"] < sqnrs["W6A6"], (family, method, sqnrs)
    assert sqnrs["W6A6"] < sqnrs["W8A8"] + (1.0 if method in SATURATING else 0.0), (family, method, sqnrs)


def _floor(family: str, bits: str) -> float:
    return W4A4_FLOOR_BERT_DB if (family, bits) == ("bert", "W4A4") else SQNR_FLOOR_DB[bits]


@pytest.mark.parametrize("family, factor", [("vit", 0.25), ("swin", 4.0), ("swin", 0.25), ("bert", 4.0)])
def test_the_w4a4_floor_fails_a_broken_calibrator(family, factor):
    """Min-max whose every step is off by `factor` (a calibrator bug) lands below the floor the methods must pass."""
    build, make_inputs = FAMILY_CASES[family]
    model = build()
    if family == "vit":
        with torch.no_grad():
            model.cls_token.normal_(std=0.3, generator=torch.Generator().manual_seed(0))
    calib = [(make_inputs(seed=10 + i), torch.zeros(8)) for i in range(2)]
    evaluation = make_inputs(seed=20)
    q = quantize_(copy.deepcopy(model), ptq_config("minmax", "W4A4"), calib)
    with torch.no_grad():
        reference = forward_logits(model, evaluation)
        right = sqnr_db(reference, forward_logits(q, evaluation))
        for _, quantizer in quantizers(q):
            if getattr(quantizer, "scale", None) is not None:
                quantizer.scale.mul_(factor)
        broken = sqnr_db(reference, forward_logits(q, evaluation))
    assert right > _floor(family, "W4A4") > broken, (right, broken)


def test_weight_only_bits_quantize_only_weights():
    from tests.conftest import image_batch, tiny_vit

    q = quantize_(tiny_vit(), MinMaxConfig(w_bits=4, a_bits=16), [(image_batch(), torch.zeros(8))])
    assert set(point_summary(q)) == {"weight"}


def test_unknown_params_and_methods_name_the_fix():
    with pytest.raises(ValueError, match="valid: .*sigma"):
        ptq_config("ema", sigmaa=0.1)
    with pytest.raises(ValueError, match="Did you mean 'percentile'"):
        PTQ_METHODS.get("percentil")
    with pytest.raises(ValueError, match="pct"):
        ptq_config("percentile", pct=2.0)


@pytest.mark.parametrize("text, expected", [("W8A8", (8, 8)), ("w4a16", (4, 16)), ("W2A4", (2, 4))])
def test_parse_bits(text, expected):
    assert parse_bits(text) == expected


@pytest.mark.parametrize("text", ["W0A8", "W9A8", "W4", "8/8", "W4A12", "W4A1"])
def test_parse_bits_rejects(text):
    with pytest.raises(ValueError, match="bits"):
        parse_bits(text)


def test_every_method_declares_itself():
    for name, method in PTQ_METHODS.items():
        info = method.describe()
        assert info["name"] == name and info["quantizes"] in ("W", "W+A") and info["calib_size"] > 0
