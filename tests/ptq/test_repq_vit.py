"""RepQ-ViT: the reparameterisation is exact and turns per-channel steps into their mean."""

import copy

import torch

from arnq.batch import forward_logits
from arnq.ptq import RepQViTConfig, ptq_config, quantize_
from arnq.ptq.common import ScaledInput, collect, materialize, norm_groups
from arnq.ptq.repq_vit import channel_qparams, reparameterisation
from arnq.quant import detect_family, quantization_disabled
from arnq.quant.fake_quant import calc_qparams, fake_quantize, quant_range
from arnq.quant.log_quant import LogQuantizer


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
