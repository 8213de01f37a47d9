"""Outlier Suppression+: exact shift/scale migration, centred channels, a grid search that really minimises."""

import copy

import pytest
import torch

import arnq.ptq.os_plus  # noqa: F401  (registers the method)
from arnq.batch import forward_logits
from arnq.ptq import ptq_config, quantize_
from arnq.ptq.common import ScaledInput, capture_calls, collect, input_maps, materialize, norm_groups
from arnq.ptq.os_plus import (
    AttentionObjective,
    LinearObjective,
    OSPlus,
    OSPlusConfig,
    QuantBits,
    channel_shift,
    find_migration,
    quantize_in_range,
    quantize_rows,
)
from arnq.quant import detect_family, quantization_disabled, quantizers
from arnq.quant.fake_quant import calc_qparams, fake_quantize, quant_range
from tests.conftest import image_batch, text_batch, tiny_bert, tiny_swin, tiny_vit

QUICK = {"n_grid": 10, "max_step": None}


def with_outliers(model):
    """Two LayerNorm channels with a x20 gain and one with a +15 offset (an asymmetric outlier the shift removes)."""
    with torch.no_grad():
        for g in norm_groups(model, detect_family(model)):
            norm = model.get_submodule(g.norm)
            norm.weight[[3, 7]] *= 20
            norm.bias[5] += 15
    return model


def test_os_plus_leaves_the_fp_function_unchanged(family_case):
    family, build, make_inputs = family_case
    model = with_outliers(build())
    calib = [(make_inputs(seed=10 + i), torch.zeros(8)) for i in range(2)]
    x = make_inputs(seed=30)
    with torch.no_grad():
        reference = forward_logits(model, x)
        q = quantize_(copy.deepcopy(model), OSPlusConfig(w_bits=4, a_bits=4, **QUICK), calib)
        with quantization_disabled(q):
            torch.testing.assert_close(forward_logits(q, x), reference, atol=1e-5, rtol=1e-5)
    maps = input_maps(q)
    assert set(maps) == {name for g in norm_groups(model, family) for name in g.linears}
    assert all(float(m.shift.abs().max()) > 1 for m in maps.values())  # the +15 channel is shifted
    assert any(float(m.scale.max()) > 2 for m in maps.values())  # and the x20 channels scaled down
    assert any(isinstance(m, ScaledInput) for m in q.modules()) == (family == "bert")  # folded on pre-LN models


@pytest.mark.parametrize("shift", [True, False])
def test_the_shift_centres_every_channel(shift):
    model = with_outliers(tiny_vit())
    batches = materialize([(image_batch(seed=i), torch.zeros(8)) for i in range(2)])
    names = ["blocks.0.attn.qkv", "blocks.1.mlp.fc1"]
    before = collect(model, names, batches)
    q = quantize_(copy.deepcopy(model), OSPlusConfig(w_bits=4, a_bits=4, shift=shift, **QUICK), batches)
    with torch.no_grad(), quantization_disabled(q):
        after = collect(q, names, batches)
    for name in names:
        centre = lambda x: (x.amax(dim=0) + x.amin(dim=0)) / 2  # noqa: E731
        width = float((after[name].amax(dim=0) - after[name].amin(dim=0)).max())
        assert float(centre(before[name])[5]) > 5  # the planted offset channel
        if shift:
            assert float(centre(after[name]).abs().max()) < 1e-5 * width
        else:
            assert float(centre(after[name])[5]) > 0.1 * width


def test_the_search_picks_the_least_loss_on_its_grid():
    """Brute force: every grid threshold scored with plain fake-quantize ops; the method picks the argmin."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(512, 16, generator=gen)
    x[:, 2] *= 30
    x[:, 9] = x[:, 9] * 3 + 20
    w, b = torch.randn(24, 16, generator=gen) * 0.2, torch.randn(24, generator=gen)
    cfg = OSPlusConfig(w_bits=4, a_bits=4, n_grid=40, max_step=None)
    lo, hi = x.amin(dim=0), x.amax(dim=0)
    shift = channel_shift(lo, hi)
    m = find_migration(lo, hi, shift, LinearObjective(x, {"fc": w}, {"fc": b}, shift, QuantBits(4, 4)), cfg)

    z = (x.amax(dim=0) + x.amin(dim=0)) / 2
    xs = x - z
    bound = float(xs.abs().max())
    grid = [bound - i * (bound - 1.0) / 40 for i in range(41)]
    reference = x @ w.T + b
    losses = []
    for t in grid:
        s = (xs.abs().amax(dim=0) / t).clamp_min(1)
        a_scale, a_zp = calc_qparams(torch.tensor(-t), torch.tensor(t), 4, False)
        xq = fake_quantize(xs / s, a_scale, a_zp, *quant_range(4, False))
        ws = w * s
        w_scale, w_zp = calc_qparams(ws.amin(dim=1), ws.amax(dim=1), 4, True)
        wq = fake_quantize(ws, w_scale[:, None], w_zp[:, None], *quant_range(4, True))
        losses.append(float((xq @ wq.T + b + w @ z - reference).pow(2).sum(dim=1).mean()))
    best = min(range(len(grid)), key=losses.__getitem__)
    assert 0 < best < len(grid) - 1  # an interior minimum: neither min-max (t = bound) nor the smallest t
    torch.testing.assert_close(torch.tensor(m.losses), torch.tensor(losses), rtol=1e-4, atol=1e-6)
    assert m.threshold == pytest.approx(grid[best])
    torch.testing.assert_close(m.scale, (xs.abs().amax(dim=0) / grid[best]).clamp_min(1))
    assert losses[best] < 0.5 * losses[0]  # scaling the outlier channel down beats the plain min-max range


def test_the_attention_objective_is_the_context_error():
    """The qkv objective equals softmax(q k^T / sqrt(d)) v computed by hand from the quantized input and weights."""
    model = tiny_vit()
    batches = materialize([(image_batch(n=4, seed=3), torch.zeros(4))])
    attn = model.blocks[0].attn
    calls = capture_calls(model, ["blocks.0.attn"], batches)["blocks.0.attn"]
    w, b = attn.qkv.weight.detach(), attn.qkv.bias.detach()
    gen = torch.Generator().manual_seed(1)
    z, s, t = torch.randn(64, generator=gen) * 0.3, 1 + torch.rand(64, generator=gen), 1.5
    objective = AttentionObjective(attn, calls, "proj", {"qkv": w}, {"qkv": b}, z, QuantBits(4, 4))

    def context(x, weight, bias):
        B, N, C = x.shape
        qkv = (x @ weight.T + bias).reshape(B, N, 3, 4, C // 4).permute(2, 0, 3, 1, 4)  # (3, B, H, N, D)
        probs = (qkv[0] @ qkv[1].transpose(-2, -1) * (C // 4) ** -0.5).softmax(dim=-1)
        return (probs @ qkv[2]).transpose(1, 2).reshape(B * N, C)

    with torch.no_grad():
        x = calls[0].args[0]
        xq = quantize_in_range((x - z) / s, t, 4, False)
        expected = (context(xq, quantize_rows(w * s, 4, True), b + w @ z) - context(x, w, b)).pow(2).sum(-1).mean()
        assert objective(s, t) == pytest.approx(float(expected), rel=1e-4)


def _errors(model, calib, x, only_reparameterised: bool) -> dict[str, float]:
    """Logit MSE vs FP of min-max, SmoothQuant (alpha 0.5) and OS+ at W4A4, optionally with only the points OS+
    reparameterises quantizing (the inputs and weights of the Linears that read a LayerNorm)."""
    targets = {name for g in norm_groups(model, detect_family(model)) for name in g.linears}
    reference = forward_logits(model, x)
    errors = {}
    for method, params in (("minmax", {}), ("smoothquant", {"alpha": 0.5}), ("os_plus", {"n_grid": 20, "max_step": None})):
        q = quantize_(copy.deepcopy(model), ptq_config(method, "W4A4", **params), calib)
        if only_reparameterised:
            for path, quantizer in quantizers(q):
                owner, _, kind = path.rpartition(".")
                quantizer.quantizing = owner in targets and kind in ("input_quantizer", "weight_quantizer")
        errors[method] = float((forward_logits(q, x) - reference).pow(2).mean())
    return errors


def test_os_plus_beats_min_max_and_smoothquant_at_w4a4_on_outlier_channels():
    """Whole W4A4 model, tiny Swin with planted outliers: OS+ logits are the closest to FP."""
    model = with_outliers(tiny_swin())
    calib = materialize([(image_batch(n=16, seed=10 + i), torch.zeros(16)) for i in range(2)])
    with torch.no_grad():
        err = _errors(model, calib, image_batch(n=16, seed=30), only_reparameterised=False)
    assert err["os_plus"] < 0.2 * err["minmax"], err
    assert err["os_plus"] < err["smoothquant"], err


@pytest.mark.parametrize("build,make_inputs", [(tiny_vit, image_batch), (tiny_bert, text_batch)], ids=["vit", "bert"])
def test_the_reparameterised_points_beat_smoothquant_at_w4a4(build, make_inputs):
    """On ViT and BERT the whole-model W4A4 error is dominated by the points OS+ leaves alone (out-projection, fc2,
    attention operands); on the points it reparameterises it wins clearly."""
    model = with_outliers(build())
    calib = materialize([(make_inputs(n=16, seed=10 + i), torch.zeros(16)) for i in range(2)])
    with torch.no_grad():
        err = _errors(model, calib, make_inputs(n=16, seed=30), only_reparameterised=True)
    assert err["os_plus"] < 0.4 * err["minmax"], err
    assert err["os_plus"] < 0.6 * err["smoothquant"], err


def test_bert_records_the_input_maps_the_shadow_reads():
    """On post-LN BERT each Linear's map (s, z / s) is recorded and matches its weights, bias and ScaledInput:
    W' = W diag(s), b' = b + W' (z / s), input x -> x / s - z / s."""
    model = with_outliers(tiny_bert())
    calib = [(text_batch(seed=10 + i, pad_first=4), torch.zeros(8)) for i in range(2)]
    for shift in (True, False):
        q = quantize_(copy.deepcopy(model), OSPlusConfig(w_bits=4, a_bits=4, shift=shift, **QUICK), calib)
        maps = input_maps(q)
        for g in norm_groups(model, "bert"):
            for name in g.linears:
                m, before, after = maps[name], model.get_submodule(name), q.get_submodule(name)
                assert (m.shift is not None) == shift
                folded = before.weight * m.scale
                torch.testing.assert_close(after.weight, folded)
                expected_bias = before.bias + (folded @ m.shift if shift else 0)
                torch.testing.assert_close(after.bias, expected_bias, atol=1e-5, rtol=1e-5)
                point = after.input_quantizer
                assert isinstance(point, ScaledInput)
                torch.testing.assert_close(point.in_scale, m.scale)
                assert (point.in_shift is None) == (not shift)
                if shift:
                    torch.testing.assert_close(point.in_shift, m.shift)


def test_os_plus_config_errors():
    with pytest.raises(ValueError, match="needs quantized activations"):
        ptq_config("os_plus", "W4A16")
    with pytest.raises(ValueError, match="changes nothing"):
        OSPlusConfig(shift=False, scale=False)
    with pytest.raises(ValueError, match="n_grid"):
        OSPlusConfig(n_grid=0)
    with pytest.raises(ValueError, match="max_step"):
        OSPlusConfig(max_step=-0.5)
    with pytest.raises(ValueError, match="min_threshold"):
        OSPlusConfig(min_threshold=0.0)
    with pytest.raises(ValueError, match="search_examples"):
        OSPlusConfig(search_examples=0)
    with pytest.raises(ValueError):
        ptq_config("os_plus", "W4A4", alpha=0.5)  # an unknown knob
    for params in (OSPlus.smoke_params, OSPlus.shadow_params):
        assert OSPlusConfig(**params).n_grid < OSPlusConfig().n_grid
