"""SmoothQuant: exact reparameterisation (folded on pre-LN, explicit on post-LN BERT), smaller activation outliers."""

import copy

import pytest
import torch

from arnq.batch import forward_logits
from arnq.ptq import SmoothQuantConfig, ptq_config, quantize_
from arnq.ptq.common import ScaledInput, collect, materialize, norm_groups
from arnq.ptq.smoothquant import smoothing_scale
from arnq.quant import detect_family, quantization_disabled
from arnq.quant.fake_quant import calc_qparams, fake_quantize, quant_range


def with_outlier_channels(model, family):
    """Give two LayerNorm channels a x20 gain, as trained transformers' outlier channels."""
    with torch.no_grad():
        for g in norm_groups(model, family):
            model.get_submodule(g.norm).weight[[3, 7]] *= 20
    return model


def test_smoothquant_leaves_the_fp_function_unchanged(family_case):
    family, build, make_inputs = family_case
    model = with_outlier_channels(build(), family)
    calib = [(make_inputs(seed=10 + i), torch.zeros(8)) for i in range(2)]
    x = make_inputs(seed=30)
    with torch.no_grad():
        reference = forward_logits(model, x)
        q = quantize_(copy.deepcopy(model), SmoothQuantConfig(w_bits=8, a_bits=8), calib)
        with quantization_disabled(q):
            torch.testing.assert_close(forward_logits(q, x), reference, atol=1e-5, rtol=1e-5)
    explicit = [m for m in q.modules() if isinstance(m, ScaledInput)]
    assert bool(explicit) == (family == "bert")  # folded into LayerNorm on pre-LN models, explicit on post-LN


def test_smoothing_flattens_the_outlier_channels():
    from tests.conftest import image_batch, tiny_vit

    model = with_outlier_channels(tiny_vit(), "vit")
    batches = materialize([(image_batch(seed=i), torch.zeros(8)) for i in range(2)])
    name = "blocks.0.mlp.fc1"
    before = collect(model, [name], batches)[name].abs().amax(dim=0)
    q = quantize_(copy.deepcopy(model), SmoothQuantConfig(w_bits=8, a_bits=8), batches)
    with torch.no_grad(), quantization_disabled(q):
        after = collect(q, [name], batches)[name].abs().amax(dim=0)
    ratio = lambda m: float(m.max() / m.mean())  # noqa: E731
    assert ratio(after) < 0.5 * ratio(before)


@pytest.mark.parametrize("bits", [8, 6])
def test_smoothing_lowers_the_error_of_a_layer_with_an_outlier_channel(bits):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2048, 64, generator=gen)
    x[:, 5] *= 30
    w = torch.randn(32, 64, generator=gen) * 0.1
    reference = x @ w.T

    def quantized_output(x_in, w_in):
        wq = fake_quantize(w_in, *[t.unsqueeze(1) for t in calc_qparams(w_in.amin(1), w_in.amax(1), bits, True)],
                           *quant_range(bits, True))
        xq = fake_quantize(x_in, *calc_qparams(x_in.min(), x_in.max(), bits, False), *quant_range(bits, False))
        return xq @ wq.T

    s = smoothing_scale(x.abs().amax(dim=0), [w], 0.5)
    plain = float(((quantized_output(x, w) - reference) ** 2).mean())
    smooth = float(((quantized_output(x / s, w * s) - reference) ** 2).mean())
    assert smooth < 0.5 * plain


def test_smoothquant_refuses_weight_only_and_bad_alpha():
    with pytest.raises(ValueError, match="needs quantized activations"):  # when the config is built, before any work
        ptq_config("smoothquant", "W4A16")
    with pytest.raises(ValueError, match="alpha"):
        ptq_config("smoothquant", alpha=1.5)


def test_norm_groups_of_bert_are_explicit():
    from tests.conftest import tiny_bert

    model = tiny_bert()
    assert not any(g.foldable for g in norm_groups(model, detect_family(model)))
