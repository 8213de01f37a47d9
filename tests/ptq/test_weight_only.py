"""Weight-only PTQ (GPTQ, AWQ, AdaRound): each beats round-to-nearest on the same grid."""

import copy

import pytest
import torch

from arnq.batch import forward_logits
from arnq.ptq import PTQ_METHODS, GPTQConfig, ptq_config, quantize_
from arnq.ptq.gptq import GroupWeightQuantizer, gptq_quantize_weight, rtn_weight
from arnq.quant import point_summary, quantization_disabled
from arnq.quant.modules import QuantLinear
from tests.conftest import image_batch, text_batch, tiny_bert, tiny_vit

WEIGHT_ONLY = ("gptq", "awq", "adaround")


def correlated_layer(seed: int = 0, n: int = 4096, d_in: int = 64, d_out: int = 32):
    """A Linear's weight and inputs with correlated channels and one outlier channel (x10)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d_in, generator=gen) @ torch.randn(d_in, d_in, generator=gen)
    x[:, 3] *= 10
    w = torch.randn(d_out, d_in, generator=gen)
    return w, x


def output_mse(w_hat: torch.Tensor, w: torch.Tensor, x: torch.Tensor) -> float:
    return float(((x @ (w_hat - w).T) ** 2).mean())


def normalised_layer():
    """The correlated layer with unit-variance inputs and weights of a trained layer's size (AdaRound's lambda
    is relative to the reconstruction error's scale, as in the paper)."""
    w, x = correlated_layer()
    return 0.1 * w, x / x.std()


@pytest.mark.parametrize("bits", [3, 4])
def test_awq_and_adaround_beat_round_to_nearest(bits):
    from arnq.ptq.adaround import adaround_layer
    from arnq.ptq.awq import awq_search_clip, awq_search_scale, pseudo_quantize

    w, x = normalised_layer()
    group = 16
    s, ratio = awq_search_scale(w, x, bits, group)
    assert ratio > 0
    scaled = pseudo_quantize(w * s, bits, group) / s
    assert output_mse(scaled, w, x) < 0.7 * output_mse(pseudo_quantize(w, bits, group), w, x)
    clip = awq_search_clip(w * s, x / s, bits, group)
    assert (clip <= (w * s).abs().reshape(32, -1, group).amax(dim=-1)).all()
    clipped = pseudo_quantize(w * s, bits, group, clip=clip) / s
    assert output_mse(clipped, w, x) <= output_mse(scaled, w, x)
    rounded, scales = adaround_layer(w, x, bits)
    assert output_mse(rounded, w, x) < 0.9 * output_mse(rtn_weight(w, bits), w, x)
    codes = rounded / scales.unsqueeze(1)
    torch.testing.assert_close(codes, codes.round(), atol=1e-4, rtol=0)  # on the grid
    assert (codes - (w / scales.unsqueeze(1))).abs().max() < 1 + 1e-4  # only ever floor or ceil


@pytest.mark.parametrize("bits", [3, 4])
@pytest.mark.parametrize("group_size, act_order", [(None, False), (16, False), (None, True), (16, True)])
def test_gptq_beats_round_to_nearest(bits, group_size, act_order):
    w, x = correlated_layer()
    h = 2 * x.T @ x / x.shape[0]
    q, scales = gptq_quantize_weight(w, h, bits, group_size=group_size, act_order=act_order, blocksize=16)
    assert output_mse(q, w, x) < 0.5 * output_mse(rtn_weight(w, bits, group_size), w, x)
    # every GPTQ weight lies on its row's (group's) grid
    col_scale = scales.unsqueeze(1) if group_size is None else scales.repeat_interleave(group_size, dim=1)
    codes = q / col_scale
    torch.testing.assert_close(codes, codes.round(), atol=1e-4, rtol=0)
    assert codes.abs().max() <= 2 ** (bits - 1) - 1 + 1e-4


def test_gptq_model_weights_are_fixed_points_of_their_quantizers():
    model = quantize_(tiny_vit(), GPTQConfig(w_bits=4, a_bits=16, group_size=16), [(image_batch(), torch.zeros(8))])
    linears = [m for n, m in model.named_modules() if isinstance(m, QuantLinear) and "blocks" in n]
    assert linears and all(isinstance(m.weight_quantizer, GroupWeightQuantizer) for m in linears)
    for m in linears:
        torch.testing.assert_close(m.weight_quantizer(m.weight), m.weight, atol=1e-6, rtol=0)


@pytest.mark.parametrize("method", WEIGHT_ONLY)
def test_weight_only_bits_quantize_only_weights(method):
    model = quantize_(tiny_bert(), ptq_config(method, "W4A16"), [(text_batch(pad_first=4), torch.zeros(8))])
    assert set(point_summary(model)) == {"weight"}
    assert PTQ_METHODS.get(method).quantizes == "W"


@pytest.mark.parametrize("method", WEIGHT_ONLY)
def test_weight_only_beats_min_max_on_tiny_models(method):
    """Lower logit error than round-to-nearest min-max weights at W3A16 on tiny ViT and BERT.

    128 calibration examples: with fewer rows than a layer has weights, the learned roundings overfit them.
    """
    for build, make in ((tiny_vit, image_batch), (tiny_bert, text_batch)):
        model = build()
        calib = [(make(n=32, seed=10 + i), torch.zeros(32)) for i in range(4)]
        evaluation = make(n=16, seed=20)
        with torch.no_grad():
            reference = forward_logits(model, evaluation)
            ours, rtn = (
                float(((forward_logits(quantize_(copy.deepcopy(model), ptq_config(name, "W3A16"), calib),
                                       evaluation) - reference) ** 2).mean())
                for name in (method, "minmax")
            )
        assert ours < rtn, (build.__name__, method, ours, rtn)


def test_gptq_leaves_model_fp_when_quantization_disabled_only_in_weights_it_changed():
    """Quantization off: the GPTQ model differs from FP only through its (rounded) weights, not its structure."""
    model = tiny_vit()
    q = quantize_(copy.deepcopy(model), GPTQConfig(w_bits=8, a_bits=16), [(image_batch(), torch.zeros(8))])
    with torch.no_grad(), quantization_disabled(q):
        diff = (q(image_batch(seed=3)) - model(image_batch(seed=3))).abs().max()
    assert diff < 0.05


@pytest.mark.parametrize(
    "method, params, message",
    [("gptq", {"percdamp": 1.5}, "percdamp"), ("gptq", {"group_size": 0}, "group_size"),
     ("gptq", {"blocksize": 0}, "blocksize"), ("awq", {"max_shrink": 1.0}, "max_shrink"),
     ("awq", {"n_grid": 1}, "n_grid"), ("adaround", {"warmup": 1.0}, "warmup"), ("adaround", {"iters": 0}, "iters")],
)
def test_bad_params_name_the_fix(method, params, message):
    with pytest.raises(ValueError, match=message):
        ptq_config(method, **params)
