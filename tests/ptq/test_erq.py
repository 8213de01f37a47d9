"""ERQ: Aqer is the ridge least-squares solution, Wqer's refinement lowers its proxy, both beat round-to-nearest."""

import copy

import pytest
import torch

import arnq.ptq.erq  # noqa: F401  (registers erq)
from arnq.batch import forward_logits
from arnq.ptq import ptq_config, quantize_
from arnq.ptq.common import norm_groups
from arnq.ptq.erq import ERQ, OFFICIAL_ROWS, aqer_update, refine_rounding, wqer_quantize
from arnq.ptq.repq_vit import channel_qparams
from arnq.quant import quantization_disabled
from arnq.quant.fake_quant import calc_qparams, fake_quantize, quant_range

SMOKE = ERQ.smoke_params


def outlier_layer(seed: int = 0, n: int = 512, d: int = 32, out: int = 16, outlier: float = 20.0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=gen, dtype=torch.float64)
    x[:, [3, 7]] *= outlier
    w = torch.randn(out, d, generator=gen, dtype=torch.float64) * 0.2
    b = torch.randn(out, generator=gen, dtype=torch.float64) * 0.1
    return x, w, b


def quant_act(x, bits=4):
    scale, zp = calc_qparams(x.min(), x.max(), bits, False)
    return fake_quantize(x.float(), scale, zp, *quant_range(bits, False)).double()


def test_aqer_is_the_ridge_least_squares_solution():
    x, w, b = outlier_layer()
    xq = torch.cat([quant_act(x), torch.ones(len(x), 1, dtype=x.dtype)], 1)
    y = x @ w.T + b
    w_cat, lam = torch.cat([w, b[:, None]], 1), 50.0
    new = aqer_update(w_cat, xq.T @ xq, xq.T @ y, lam)
    # the same problem as an ordinary least squares: [Ā; √λ I] δᵀ = [Y - Ā wᵀ; 0]
    stacked = torch.cat([xq, lam**0.5 * torch.eye(xq.shape[1], dtype=x.dtype)])
    rhs = torch.cat([y - xq @ w_cat.T, torch.zeros(xq.shape[1], len(w), dtype=x.dtype)])
    delta = torch.linalg.lstsq(stacked, rhs).solution
    torch.testing.assert_close(new, w_cat + delta.T, atol=1e-8, rtol=1e-8)
    objective = lambda m: float((xq @ m.T - y).square().sum() + lam * (m - w_cat).square().sum())  # noqa: E731
    assert objective(new) < objective(w_cat)
    for _ in range(5):  # a local minimum: perturbations only raise the objective
        assert objective(new + 1e-3 * torch.randn_like(new)) > objective(new)


def test_refinement_keeps_rounding_choices_and_lowers_the_proxy():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(256, 12, generator=gen, dtype=torch.float64) + 0.5
    proxy = x.T @ x / len(x)
    w = torch.randn(8, 12, generator=gen, dtype=torch.float64)
    floor_err, ceil_err = w.floor() - w, w.ceil() - w
    err = w.round() - w
    refined = refine_rounding(err, floor_err, ceil_err, proxy, 100)
    assert bool(((refined == floor_err) | (refined == ceil_err)).all())
    quad = lambda e: (e @ proxy * e).sum(1)  # noqa: E731
    assert bool((quad(refined) <= quad(err) + 1e-12).all()) and float(quad(refined).sum()) < float(quad(err).sum())


def test_erq_lowers_the_layer_output_error_of_round_to_nearest_at_w4a4():
    x, w, b = outlier_layer(seed=2, outlier=5.0)
    lam = 1000.0 * len(x) / OFFICIAL_ROWS  # the official λ at this row count (lambda_reference_rows)
    xq = torch.cat([quant_act(x), torch.ones(len(x), 1, dtype=x.dtype)], 1)
    y = x @ w.T + b
    gram, cross = xq.T @ xq, xq.T @ y

    def grid(weight):
        scale, zp = channel_qparams(weight.float().T, 4)
        return scale.double(), zp.double()

    def error(w_cat):
        return float((xq @ w_cat.T - y).square().mean())

    scale, zp = grid(w)
    rtn = torch.cat([fake_quantize(w, scale[:, None], zp[:, None], 0, 15), b[:, None]], 1)
    aq = aqer_update(torch.cat([w, b[:, None]], 1), gram, cross, lam)
    scale, zp = grid(aq[:, :-1])
    aq_rtn = torch.cat([fake_quantize(aq[:, :-1], scale[:, None], zp[:, None], 0, 15), aq[:, -1:]], 1)
    erq = wqer_quantize(aq, gram, xq.sum(0), len(x), scale, zp, 0, 15, True, lam)
    on_grid = fake_quantize(erq[:, :-1], scale[:, None], zp[:, None], 0, 15)
    torch.testing.assert_close(on_grid, erq[:, :-1], atol=1e-9, rtol=0)  # weights are 4-bit codes
    assert error(erq) < error(aq_rtn) < error(rtn)  # Wqer beats rounding the Aqer weights, which beats plain RTN
    assert error(erq) < 0.8 * error(rtn), (error(erq), error(rtn))


def with_outlier_channels(model, family):
    with torch.no_grad():
        for g in norm_groups(model, family):
            model.get_submodule(g.norm).weight[[3, 7]] *= 20
    return model


def test_erq_pipeline_keeps_the_fp_function_without_weight_updates(family_case):
    """With λ1 huge and Wqer off only the reparameterisation touches the weights: FP logits unchanged."""
    family, build, make_inputs = family_case
    model = with_outlier_channels(build(), family)
    calib = [(make_inputs(seed=10), torch.zeros(8))]
    x = make_inputs(seed=30)
    cfg = ptq_config("erq", "W4A4", lambda_aqer=1e12, wqer=False)
    with torch.no_grad():
        q = quantize_(copy.deepcopy(model), cfg, calib)
        with quantization_disabled(q):
            torch.testing.assert_close(forward_logits(q, x), forward_logits(model, x), atol=1e-5, rtol=1e-5)


def test_erq_beats_minmax_at_w4a4_on_outlier_channels():
    from tests.conftest import image_batch, tiny_vit

    model = with_outlier_channels(tiny_vit(), "vit")
    calib = [(image_batch(n=16, seed=10 + i), torch.zeros(16)) for i in range(2)]
    x = image_batch(n=16, seed=30)
    with torch.no_grad():
        ref = forward_logits(model, x)
        err = {name: float((forward_logits(quantize_(copy.deepcopy(model), ptq_config(name, "W4A4", **kw), calib), x)
                            - ref).pow(2).mean())
               for name, kw in (("minmax", {}), ("erq", SMOKE))}
    assert err["erq"] < 0.5 * err["minmax"], err


def test_erq_config_errors():
    with pytest.raises(ValueError, match="needs a_bits < 16"):
        ptq_config("erq", "W4A16")
    ptq_config("erq", "W4A16", aqer=False)  # weight-only Wqer is allowed
    with pytest.raises(ValueError, match="lambda_aqer"):
        ptq_config("erq", "W4A4", lambda_aqer=0)
    with pytest.raises(ValueError, match="refine_steps"):
        ptq_config("erq", "W4A4", refine_steps=-1)
    with pytest.raises(ValueError, match="repq_vit"):
        ptq_config("erq", "W4A4", aqer=False, wqer=False)
    with pytest.raises(ValueError, match="lambda_reference_rows"):
        ptq_config("erq", "W4A4", lambda_reference_rows=0)
