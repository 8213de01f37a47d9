"""RepQ-ViT: the reparameterisation is exact, turns per-channel steps into their mean, and keeps the official
range rule (no widening to 0, unclamped zero points) unless widen_to_zero is set."""

import copy

import pytest
import torch

from arnq.batch import forward_logits
from arnq.ptq import RepQViTConfig, ptq_config, ptq_config_from_dict, quantize_
from arnq.ptq.common import ScaledInput, collect, input_maps, materialize, norm_groups
from arnq.ptq.erq import ERQConfig
from arnq.ptq.repq_vit import channel_qparams, reparameterisation
from arnq.quant import detect_family, quantization_disabled, quantizers
from arnq.quant.fake_quant import calc_qparams, fake_quantize, quant_range, range_qparams
from arnq.quant.log_quant import LogQuantizer
from arnq.quant.quantizer import FakeQuantizer, QuantSpec


def test_repq_vit_leaves_the_fp_function_unchanged(family_case):
    family, build, make_inputs = family_case
    model = build()
    calib = [(make_inputs(seed=10 + i), torch.zeros(8)) for i in range(2)]
    x = make_inputs(seed=30)
    with torch.no_grad():
        reference = forward_logits(model, x)
        q = quantize_(copy.deepcopy(model), RepQViTConfig(w_bits=4, a_bits=4), calib)
        with quantization_disabled(q):
            torch.testing.assert_close(forward_logits(q, x), reference, atol=1e-5, rtol=1e-5)
    assert any(isinstance(m, LogQuantizer) for m in q.modules())
    assert any(isinstance(m, ScaledInput) for m in q.modules()) == (family == "bert")


def test_reparameterised_channels_share_the_mean_step():
    """After x / r - b every channel's calibrated range maps onto the single (mean step, mean zero point) grid."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(4096, 16, generator=gen) * torch.logspace(-1, 1, 16) + torch.linspace(-2, 2, 16)
    scale, zp = channel_qparams(x, 4)
    r, b, target_scale, target_zp = reparameterisation(scale, zp)
    assert abs(target_scale - float(scale.mean())) < 1e-6 and abs(target_zp - float(zp.mean())) < 1e-6
    x_rep = x / r - b
    # each channel's range [-z s, (2^b - 1 - z) s] lands on [-z~ s~, (2^b - 1 - z~) s~]
    low = (-zp * scale) / r - b
    torch.testing.assert_close(low, torch.full_like(low, -target_zp * target_scale), atol=1e-5, rtol=1e-5)
    # so one per-tensor quantizer on x_rep, mapped back, is as good as the per-channel one (the grids differ only
    # by the fractional part of the mean zero point)
    qmin, qmax = quant_range(4, False)
    per_channel = fake_quantize(x, scale, zp, qmin, qmax)
    per_tensor = (fake_quantize(x_rep, torch.tensor(target_scale), torch.tensor(target_zp), qmin, qmax) + b) * r
    assert (per_tensor - x).pow(2).mean() < 1.3 * (per_channel - x).pow(2).mean()
    # and it beats the plain per-tensor min-max quantizer
    s, z = calc_qparams(x.min(), x.max(), 4, False)
    assert (per_tensor - x).pow(2).mean() < 0.5 * (fake_quantize(x, s, z, qmin, qmax) - x).pow(2).mean()


def test_repq_beats_min_max_at_w4a4_on_post_ln_outliers():
    """With outlier LayerNorm channels (x20), RepQ-ViT's W4A4 logits are closer to FP than min-max's."""
    from tests.conftest import image_batch, tiny_vit

    model = tiny_vit()
    with torch.no_grad():
        for g in norm_groups(model, detect_family(model)):
            model.get_submodule(g.norm).weight[[3, 7]] *= 20
    calib = materialize([(image_batch(n=16, seed=10 + i), torch.zeros(16)) for i in range(2)])
    x = image_batch(n=16, seed=30)
    with torch.no_grad():
        reference = forward_logits(model, x)
        err = {m: float((forward_logits(quantize_(copy.deepcopy(model), ptq_config(m, "W4A4"), calib),
                                         x) - reference).pow(2).mean()) for m in ("minmax", "repq_vit")}
    assert err["repq_vit"] < 0.5 * err["minmax"], err
    assert collect(model, ["blocks.0.attn.qkv"], calib)["blocks.0.attn.qkv"].shape[1] == 64


def offset_columns(n: int = 8192, mean: float = 3.0, sd: float = 0.25) -> torch.Tensor:
    """(n, 3): a signed column, one entirely above 0 and one entirely below 0 (offset post-LayerNorm channels)."""
    z = torch.randn(n, 3, generator=torch.Generator().manual_seed(0))
    return torch.stack([z[:, 0], mean + sd * z[:, 1], -(mean + sd * z[:, 2])], dim=1)


def test_a_channel_off_zero_keeps_all_levels_on_its_own_range():
    """Official rule: an all-positive channel's step spans its quantile pair, the zero point lies below qmin
    (above qmax for an all-negative one), and the error drops; widen_to_zero=True spends half the grid on [0, lo]."""
    x = offset_columns()
    qmin, qmax = quant_range(4, False)
    scale, zp = channel_qparams(x, 4)
    wide_scale, wide_zp = channel_qparams(x, 4, widen_to_zero=True)
    assert scale[0] == wide_scale[0] and zp[0] == wide_zp[0]  # a range containing 0 is the same either way
    assert zp[1] < qmin and zp[2] > qmax and wide_zp[1] == qmin and wide_zp[2] == qmax
    ratio = wide_scale / scale  # measured: 2.51 (positive column), 2.37 (negative column)
    assert float(ratio[1]) > 2.3 and float(ratio[2]) > 2.2, ratio
    err = (fake_quantize(x, scale, zp, qmin, qmax) - x).pow(2).mean(0)
    wide_err = (fake_quantize(x, wide_scale, wide_zp, qmin, qmax) - x).pow(2).mean(0)
    assert bool((wide_err[1:] > 5 * err[1:]).all()), wide_err / err  # measured: 5.9x, 5.5x
    levels = [len(torch.unique(fake_quantize(x[:, 1], s[1], z[1], qmin, qmax))) for s, z in ((scale, zp),
                                                                                            (wide_scale, wide_zp))]
    assert levels == [16, 8]
    # the reparameterised per-tensor quantizer keeps the gain on the offset channels
    for s, z, bound in ((scale, zp, err), (wide_scale, wide_zp, wide_err)):
        r, b, target_scale, target_zp = reparameterisation(s, z)
        mapped = (fake_quantize(x / r - b, torch.tensor(target_scale), torch.tensor(target_zp), qmin, qmax) + b) * r
        assert bool(((mapped - x).pow(2).mean(0) < 1.3 * bound).all())
    assert float(reparameterisation(scale, zp)[3]) == float(zp.mean())  # the mean zero point, not rounded


def test_a_constant_channel_falls_back_to_the_widened_range():
    """A constant column has no spanning step (the official code divides by 0): it gets calc_qparams' grid, exact."""
    x = torch.cat([torch.full((512, 1), 2.5), torch.randn(512, 1, generator=torch.Generator().manual_seed(0))], 1)
    scale, zp = channel_qparams(x, 4)
    assert torch.isfinite(scale).all() and torch.isfinite(zp).all() and 0 <= float(zp[0]) <= 15
    torch.testing.assert_close(fake_quantize(x[:, :1], scale[:1], zp[:1], 0, 15), x[:, :1])
    assert range_qparams(torch.tensor(2.5), torch.tensor(2.5), 4) == calc_qparams(torch.tensor(2.5),
                                                                                  torch.tensor(2.5), 4, False)


def test_widen_to_zero_gives_the_calc_qparams_pick():
    """widen_to_zero=True: each column's quantile pair through calc_qparams (widened, zero point clamped)."""
    x = offset_columns()
    qmin, qmax = quant_range(4, False)
    levels = torch.tensor([0.999, 0.9999, 0.99999, 0.001, 0.0001, 0.00001])
    bounds = torch.quantile(x, levels, dim=0)
    candidates = [calc_qparams(bounds[3 + i], bounds[i], 4, False) for i in range(3)]
    errors = torch.stack([(fake_quantize(x, s, z, qmin, qmax) - x).pow(2).mean(0) for s, z in candidates])
    pick = errors.argmin(0)
    scale, zp = channel_qparams(x, 4, widen_to_zero=True)
    for c in range(x.shape[1]):
        assert scale[c] == candidates[pick[c]][0][c] and zp[c] == candidates[pick[c]][1][c]


def test_the_range_rule_changes_only_models_with_channels_off_zero():
    """On the golden cases' tiny ViT and Swin every post-LN channel and weight row straddles 0, so both rules give
    the same logits bit for bit; tiny BERT has channels off 0, and its logits move."""
    from tests.ptq.golden_logits import prepared_case

    for family in ("bert", "swin", "vit"):
        model, calib, evaluation = prepared_case(family)
        logits = {}
        for widen in (False, True):
            torch.manual_seed(0)
            q = quantize_(copy.deepcopy(model), ptq_config("repq_vit", "W4A4", widen_to_zero=widen), calib)
            with torch.no_grad():
                logits[widen] = forward_logits(q, evaluation)
        assert torch.equal(logits[False], logits[True]) == (family != "bert"), family


def test_fake_quantization_with_a_zero_point_outside_the_range():
    """An integer zero point below qmin or above qmax gives the nearest point of {(q - z) s : q = qmin..qmax}; a
    fractional one (the reparameterised mean) the multiples of s within [(qmin - z) s, (qmax - z) s]; the same on
    every path: fake_quantize with and without autograd, a per-channel FakeQuantizer, and a ScaledInput."""
    qmin, qmax = quant_range(4, False)
    scale = torch.tensor([0.1, 0.2, 0.05])
    zp = torch.tensor([-23.0, 35.0, 7.4])
    x = torch.randn(4000, 3, generator=torch.Generator().manual_seed(1)) * torch.tensor([1.0, 1.0, 0.2])
    x = x + torch.tensor([3.0, -5.5, 0.0])
    grid = (torch.arange(qmin, qmax + 1.0)[:, None] - zp[:2]) * scale[:2]  # (16, 2)
    nearest = grid.gather(0, (x[None, :, :2] - grid[:, None]).abs().argmin(0))  # (4000, 2)
    plain = fake_quantize(x, scale, zp, qmin, qmax)
    torch.testing.assert_close(plain[:, :2], nearest, atol=1e-6, rtol=0)
    lo, hi = float((qmin - zp[2]) * scale[2]), float((qmax - zp[2]) * scale[2])
    torch.testing.assert_close(plain[:, 2], (torch.round(x[:, 2] / scale[2]) * scale[2]).clamp(lo, hi),
                               atol=1e-6, rtol=0)
    assert plain[:, 2].min() < lo + 1e-6 and plain[:, 2].max() > hi - 1e-6  # the test data reaches both clips
    torch.testing.assert_close(fake_quantize(x.clone().requires_grad_(), scale, zp, qmin, qmax).detach(), plain,
                               atol=0, rtol=0)
    point = FakeQuantizer(QuantSpec(bits=4, granularity="channel", axis=-1), "linear_in")
    point.set_qparams(scale, zp)
    point.quantizing = True
    torch.testing.assert_close(point(x), plain, atol=0, rtol=0)
    r, b = torch.tensor([2.0, 0.5, 1.0]), torch.tensor([0.3, -0.2, 0.0])
    mapped = ScaledInput(FakeQuantizer(QuantSpec(bits=4), "linear_in"), r, b)
    mapped.set_qparams(torch.tensor(0.1), torch.tensor(-3.6))
    mapped.quantizing = True
    torch.testing.assert_close(mapped(x), fake_quantize(x / r - b, torch.tensor(0.1), torch.tensor(-3.6), qmin, qmax),
                               atol=0, rtol=0)


def offset_model(family: str):
    """A tiny model whose first post-LayerNorm channels sit entirely above 0 (an offset of 3 in the LayerNorm bias)."""
    from tests.conftest import tiny_bert, tiny_vit

    model = tiny_vit() if family == "vit" else tiny_bert()
    with torch.no_grad():
        for g in norm_groups(model, family):
            norm = model.get_submodule(g.norm)
            norm.weight[:6] *= 0.25
            norm.bias[:6] += 3.0
    return model


@pytest.mark.parametrize("family", ["vit", "bert"])
def test_offset_channels_stay_exact_in_fp_and_quantize_finer(family):
    """With all-positive post-LN channels the reparameterisation is still exact with quantization off, and the
    reparameterised input point quantizes those channels (mapped back: r (Q(x / r - b) + b)) with a lower error
    than widen_to_zero=True; the other channels' error stays about the same."""
    from tests.conftest import image_batch, text_batch

    batch = image_batch if family == "vit" else text_batch
    model = offset_model(family)
    calib = materialize([(batch(16, seed=10 + i), torch.zeros(16)) for i in range(2)])
    name = norm_groups(model, family)[1].linears[0]  # fc1 / intermediate.dense of the first block
    x = collect(model, [name], calib)[name]
    evaluation = batch(16, seed=30)
    err = {}
    with torch.no_grad():
        reference = forward_logits(model, evaluation)
        for widen in (False, True):
            q = quantize_(copy.deepcopy(model), RepQViTConfig(w_bits=4, a_bits=4, widen_to_zero=widen), calib)
            with quantization_disabled(q):
                torch.testing.assert_close(forward_logits(q, evaluation), reference, atol=1e-5, rtol=1e-5)
            m = input_maps(q)[name]
            point = q.get_submodule(name).input_quantizer
            err[widen] = ((point.quantize(x / m.scale - m.shift) + m.shift) * m.scale - x).pow(2).mean(0)
    assert float(err[True][:6].mean()) > 3 * float(err[False][:6].mean()), (err[True][:6], err[False][:6])
    assert float(err[False][6:].mean()) < 1.2 * float(err[True][6:].mean())


@pytest.mark.parametrize("family", ["vit", "bert"])
@pytest.mark.parametrize("method", ["repq_vit", "erq"])
def test_ptq_aware_noise_mirrors_zero_points_outside_the_range(family, method, monkeypatch):
    """PTQ-aware ARNQ at full strength reproduces the target's quantized forward also when per-channel zero points
    (and on BERT the per-tensor target's) lie outside [qmin, qmax] (RepQ-ViT's in-training runs set to its
    official range rule, which its `shadow_params` replace by the widened one)."""
    from arnq.arms.noise import NoiseConfig, NoiseInjector
    from arnq.ptq.base import handler_for
    from arnq.ptq.common import run_model
    from tests.conftest import image_batch, text_batch

    monkeypatch.setattr(handler_for(ptq_config(method, "W4A4")), "shadow_params",
                        {k: v for k, v in handler_for(ptq_config(method, "W4A4")).shadow_params.items()
                         if k != "widen_to_zero"})

    batch = image_batch if family == "vit" else text_batch
    target = ptq_config(method, "W4A4", **handler_for(ptq_config(method, "W4A4")).smoke_params)
    base = offset_model(family)
    calib = [(batch(8, seed=5), torch.zeros(8, dtype=torch.long))]
    model = copy.deepcopy(base)
    inj = NoiseInjector(model, NoiseConfig(target="WA", schedule="constant"), target, seed=0, calib=lambda n: calib)
    model.train()
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    inj.on_step(0, 10)
    shadow = inj.shadow.model
    if family == "bert":  # the offset channels pull the reparameterised target's mean zero point below qmin
        assert any(bool((q.zero_point < 0).any()) for _, q in quantizers(shadow)
                   if isinstance(q, ScaledInput) and q.zero_point is not None)
    x = batch(8, seed=9)
    with torch.no_grad():
        torch.testing.assert_close(run_model(model, x), run_model(shadow, x), atol=2e-5, rtol=0)
    assert not inj.unmatched


def test_ptq_aware_arnq_trains_against_the_widened_rule_and_quantizes_with_the_official_one():
    from arnq.arms.noise import NoiseConfig, ptq_calib_size
    from arnq.arms.shadow import shadow_config

    target = RepQViTConfig(w_bits=4, a_bits=4)
    shadow = shadow_config(target, ptq_calib_size(NoiseConfig(), target))
    assert target.widen_to_zero is False and shadow.widen_to_zero is True
    assert shadow_config(ERQConfig(w_bits=4, a_bits=4), 8).widen_to_zero is False  # not measured for ERQ


def test_config_validation_and_round_trip():
    cfg = RepQViTConfig(w_bits=4, a_bits=4, widen_to_zero=True)
    assert ptq_config_from_dict(cfg.to_dict()) == cfg and cfg.changed_params() == {"widen_to_zero": True}
    assert RepQViTConfig().widen_to_zero is False and ERQConfig().widen_to_zero is False
    for bad in ("yes", 1, None):
        with pytest.raises(ValueError, match="widen_to_zero"):
            RepQViTConfig(widen_to_zero=bad)
        with pytest.raises(ValueError, match="widen_to_zero"):
            ptq_config("repq_vit", "W4A4", widen_to_zero=bad)
    with pytest.raises(ValueError, match="log_softmax"):
        RepQViTConfig(log_softmax="false")
    erq = ptq_config("erq", "W4A4", widen_to_zero=True)
    assert ptq_config_from_dict(erq.to_dict()) == erq
