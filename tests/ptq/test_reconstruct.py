"""BRECQ / QDrop block reconstruction: rounding, step search, dropping, Fisher weights, quality, determinism."""

import copy

import pytest
import torch

from arnq.batch import forward_logits
from arnq.ptq import MinMaxConfig, ptq_config, quantize_
from arnq.ptq.brecq import BRECQConfig
from arnq.ptq.common import materialize, norm_groups
from arnq.ptq.gptq import GroupWeightQuantizer
from arnq.ptq.qdrop import QDropConfig
from arnq.ptq.reconstruct import (
    SoftRounding,
    fisher_weights,
    fp_copy,
    mixed_input,
    quantization_dropped,
    search_row_scale,
)
from arnq.quant import calibrate, convert, prepare
from arnq.quant.fake_quant import fake_quantize, quant_range
from arnq.quant.quantizer import FakeQuantizer, QuantSpec
from tests.conftest import image_batch, text_batch, tiny_bert, tiny_swin, tiny_vit

W4A4 = {"brecq": {"iters": 80, "act_iters": 20}, "qdrop": {"iters": 80}}


def with_outlier_channels(model, family="vit"):
    with torch.no_grad():
        for g in norm_groups(model, family):
            model.get_submodule(g.norm).weight[[3, 7]] *= 20
    return model


def calib_batches(n=2):
    return [(image_batch(seed=10 + i), torch.randint(0, 10, (8,), generator=torch.Generator().manual_seed(i)))
            for i in range(n)]


@pytest.fixture(scope="module")
def outlier_runs():
    """The planted-outlier tiny ViT at W4A4: FP reference, min-max, round-to-nearest on the same grid, each method."""
    torch.manual_seed(0)
    model = with_outlier_channels(tiny_vit())
    calib, x = calib_batches(), image_batch(seed=30)
    with torch.no_grad():
        runs = {"fp": forward_logits(model, x)}
        runs["minmax"] = forward_logits(quantize_(copy.deepcopy(model), MinMaxConfig(w_bits=4, a_bits=4), calib), x)
        rtn = quantize_(copy.deepcopy(model), BRECQConfig(w_bits=4, a_bits=4, iters=1, act_iters=1, lr=0, lr_step=0),
                        calib)
        runs["rtn"] = forward_logits(rtn, x)
    models = {}
    for method, params in W4A4.items():
        models[method] = quantize_(copy.deepcopy(model), ptq_config(method, "W4A4", **params), calib)
        with torch.no_grad():
            runs[method] = forward_logits(models[method], x)
    return runs, models


def logit_mse(runs, name):
    return float((runs[name] - runs["fp"]).pow(2).mean())


@pytest.mark.parametrize("method", sorted(W4A4))
def test_reconstruction_beats_min_max_and_round_to_nearest_at_w4a4(outlier_runs, method):
    runs, _ = outlier_runs
    assert logit_mse(runs, method) < 0.6 * logit_mse(runs, "minmax")
    assert logit_mse(runs, method) < 0.85 * logit_mse(runs, "rtn")


@pytest.mark.parametrize("method", sorted(W4A4))
def test_every_block_output_is_closer_than_round_to_nearest(outlier_runs, method):
    _, models = outlier_runs
    log = models[method].arnq_recon_log
    rounding = [r for r in log if r.stage in ("weights", "joint")]
    assert [r.block for r in rounding] == ["blocks.0", "blocks.1"]
    assert all(r.mse < r.rtn_mse for r in rounding), log
    assert sum(r.mse for r in rounding) < 0.9 * sum(r.rtn_mse for r in rounding), log


@pytest.mark.parametrize("method", sorted(W4A4))
def test_final_rounding_is_hard_and_nothing_is_dropped_at_inference(outlier_runs, method):
    model = outlier_runs[1][method]
    linears = [m for n, m in model.named_modules() if n.startswith("blocks.") and hasattr(m, "weight_quantizer")]
    assert len(linears) == 8
    for m in linears:
        q = m.weight_quantizer
        assert isinstance(q, GroupWeightQuantizer) and q.quantizing
        ints = m.weight / q.scale  # (O, 1) steps
        torch.testing.assert_close(ints, ints.round(), atol=1e-4, rtol=0)
        assert int(ints.round().abs().max()) <= 7
    assert not any(mod._forward_hooks or mod._forward_pre_hooks for mod in model.modules() if isinstance(mod, FakeQuantizer))
    x = image_batch(seed=31)
    with torch.no_grad():
        assert torch.equal(forward_logits(model, x), forward_logits(model, x))


def test_three_bit_weights_reconstruct_below_round_to_nearest():
    model, calib, x = tiny_vit(), calib_batches(1), image_batch(seed=30)
    with torch.no_grad():
        reference = forward_logits(model, x)
    errors = {}
    for lr in (0.0, 1e-2):
        q = quantize_(copy.deepcopy(model), BRECQConfig(w_bits=3, a_bits=16, iters=80, lr=lr), calib)
        assert all(r.mse < 0.8 * r.rtn_mse for r in q.arnq_recon_log) or lr == 0
        with torch.no_grad():
            errors[lr] = float((forward_logits(q, x) - reference).pow(2).mean())
    assert errors[1e-2] < 0.7 * errors[0.0]


def test_soft_rounding_starts_at_the_weight_and_rounds_to_the_grid():
    w = torch.randn(6, 16, generator=torch.Generator().manual_seed(0))
    scale = search_row_scale(w, 4)
    r = SoftRounding(w, scale, 4)
    inside = (w / scale.unsqueeze(1)).abs() < 7
    torch.testing.assert_close(r(w)[inside], w[inside], atol=1e-3 * float(scale.max()), rtol=0)
    r.mode = "nearest"
    qmin, qmax = quant_range(4, True)
    rtn = fake_quantize(w, scale.unsqueeze(1), torch.zeros(6, 1), qmin, qmax)
    assert torch.allclose(r(w), rtn, atol=1e-6)
    with torch.no_grad():
        r.v.add_(torch.randn_like(r.v))
    r.mode = "hard"
    ints = r(w) / scale.unsqueeze(1)
    assert torch.allclose(ints, ints.round(), atol=1e-5) and ints.abs().max() <= qmax
    assert float(r.regulariser(2.0).detach()) > 0


def test_searched_weight_step_is_no_worse_than_min_max_on_every_row():
    w = torch.randn(32, 64, generator=torch.Generator().manual_seed(1))
    w[:, 0] *= 8  # an outlier column: shrinking the range pays
    qmin, qmax = quant_range(4, True)

    def row_err(scale):
        s = scale.unsqueeze(1)
        return (fake_quantize(w, s, torch.zeros_like(s), qmin, qmax) - w).abs().pow(2.4).sum(1)

    searched, minmax = row_err(search_row_scale(w, 4)), row_err(w.abs().amax(1) / qmax)
    assert bool((searched <= minmax + 1e-6).all()) and float(searched.sum()) < 0.95 * float(minmax.sum())


@pytest.mark.parametrize("p", [0.25, 0.5])
def test_dropping_keeps_fp_values_at_the_requested_rate_only_inside_the_context(p):
    q = FakeQuantizer(QuantSpec(4), "linear_in")
    q.set_qparams(torch.tensor(0.3), torch.tensor(8.0))
    q.quantizing = True
    x = torch.rand(200, 100, generator=torch.Generator().manual_seed(2)) * 2 - 1
    on_grid = q(x)
    assert float((on_grid == x).float().mean()) < 0.01
    with quantization_dropped([q], p, torch.Generator().manual_seed(3)):
        dropped = q(x)
    kept_fp = dropped == x
    assert abs(float(kept_fp.float().mean()) - p) < 0.02
    assert torch.equal(dropped[~kept_fp], on_grid[~kept_fp])
    assert torch.equal(q(x), on_grid)  # hook gone
    mix = mixed_input(on_grid, x, p, torch.Generator().manual_seed(4))
    assert abs(float((mix == x).float().mean()) - p) < 0.02
    assert torch.equal(mixed_input(on_grid, x, 0.0, torch.Generator()), on_grid)


def test_qdrop_is_deterministic_given_the_seed():
    model, calib, x = tiny_vit(), calib_batches(1), image_batch(seed=30)
    outs = []
    for seed in (0, 0, 1):
        q = quantize_(copy.deepcopy(model), QDropConfig(w_bits=4, a_bits=4, iters=10, seed=seed), calib)
        with torch.no_grad():
            outs.append(forward_logits(q, x))
    assert torch.equal(outs[0], outs[1]) and not torch.equal(outs[0], outs[2])


def test_fisher_weights_are_damped_squared_gradients():
    model = tiny_vit()
    batches = materialize(calib_batches(1))
    prepare(model, BRECQConfig(w_bits=4, a_bits=16).quant_scheme(), "vit")
    calibrate(model, batches)
    convert(model)
    fp = fp_copy(model)
    for mode in ("kl", "labels"):
        (w,) = fisher_weights(model, fp, "blocks.1", batches, mode)
        assert w.shape == (8, 17, 64) and bool((w >= 1).all()) and float(w.max()) > 1
    with pytest.raises(ValueError, match="labels outside"):
        fisher_weights(model, fp, "blocks.1", [(batches[0][0], torch.full((8,), 50))], "labels")
    q = quantize_(tiny_vit(), BRECQConfig(w_bits=4, a_bits=16, iters=5, fisher="kl"), calib_batches(1))
    assert len(q.arnq_recon_log) == 2


@pytest.mark.parametrize("method", sorted(W4A4))
@pytest.mark.parametrize("family", ["swin", "bert"])
def test_every_block_of_swin_and_padded_bert_is_reconstructed(method, family):
    build, batch, blocks = {
        "swin": (tiny_swin, image_batch, ["layers.0.blocks.0", "layers.0.blocks.1", "layers.1.downsample",
                                          "layers.1.blocks.0", "layers.1.blocks.1"]),
        "bert": (lambda: tiny_bert(), lambda seed: text_batch(seed=seed, pad_first=5),
                 ["bert.encoder.layer.0", "bert.encoder.layer.1"]),
    }[family]
    model = build()
    cfg = ptq_config(method, "W4A4", iters=4, **({"act_iters": 2} if method == "brecq" else {}))
    q = quantize_(model, cfg, [(batch(seed=10), torch.zeros(8, dtype=torch.long))])
    assert [r.block for r in q.arnq_recon_log if r.stage != "steps"] == blocks
    with torch.no_grad():
        assert torch.isfinite(forward_logits(q, batch(seed=30))).all()


def test_config_errors_name_the_fix():
    with pytest.raises(ValueError, match="drop_prob"):
        ptq_config("qdrop", "W4A4", drop_prob=1.0)
    with pytest.raises(ValueError, match="fisher"):
        ptq_config("brecq", "W4A4", fisher="full")
    with pytest.raises(ValueError, match="iters"):
        ptq_config("qdrop", "W4A4", iters=0)
    with pytest.raises(ValueError, match="b_end"):
        ptq_config("brecq", "W4A4", b_start=2.0, b_end=20.0)
    with pytest.raises(ValueError, match="warmup"):
        ptq_config("brecq", "W4A4", warmup=1.0)
    with pytest.raises(ValueError, match="act_iters"):
        ptq_config("brecq", "W4A4", act_iters=-1)
    with pytest.raises(ValueError, match="learning rates"):
        ptq_config("qdrop", "W4A4", lr_step=-1.0)
