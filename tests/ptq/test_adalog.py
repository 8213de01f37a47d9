"""AdaLog: table dequant equals log2 at q = 37, the searched base beats log2, FPCS finds the minimum, beats min-max."""

import copy

import pytest
import torch

import arnq.ptq.adalog  # noqa: F401  (registers adalog)
from arnq.batch import forward_logits
from arnq.ptq import ptq_config, quantize_
from arnq.ptq.adalog import (
    AdaLog,
    AdaLogQuantizer,
    adalog_quantize,
    base_candidates,
    fpcs,
    quantization_error,
    search_base,
)
from arnq.ptq.common import norm_groups
from arnq.quant import quantization_disabled
from arnq.quant.log_quant import log_quantize

SMOKE = AdaLog.smoke_params
Q_LO = 10  # candidate bases 2^(q/37), q = 10..137


def softmax_like(seed: int = 0, n: int = 256, keys: int = 64) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(n, keys, generator=gen) * 2.5).softmax(-1)


@pytest.mark.parametrize("bits", [3, 4])
def test_q37_is_log2_and_the_searched_base_beats_it(bits):
    p = softmax_like()
    torch.testing.assert_close(adalog_quantize(p, bits, 37.0, 1.0), log_quantize(p, bits, 1.0, "2"))
    q = base_candidates()
    errors = quantization_error(p.flatten(), bits, q)
    best = search_base(p, bits)
    assert best == int(q[errors.argmin()])  # the search returns the grid minimum
    log2_error = float(errors[q == 37])
    assert float(errors.min()) < 0.8 * log2_error, (best, float(errors.min()), log2_error)
    assert best != 37


def test_adalog_dequantizes_through_its_table_with_straight_through_gradient():
    x = softmax_like(seed=3).requires_grad_(True)
    point = AdaLogQuantizer(4)
    point.set_adalog(20, 1.0)
    point.quantizing = True
    y = point(x)
    levels = torch.unique(y.detach())
    assert len(levels) <= 2**4 + 1  # 16 codes and 'beyond the range'
    y.sum().backward()
    assert torch.equal(x.grad, torch.ones_like(x))


def test_fpcs_finds_the_minimum_of_a_smooth_error():
    q_grid = base_candidates()

    def error(q, s):  # minimum at q = 42, s = 0.731
        return (q - 42.0).square() + 1e3 * (s - 0.731).square()

    q, s = fpcs(error, q_grid, 0.5, 1.0, 0.99)
    assert q == 42.0 and abs(s - 0.731) < 2e-3


def with_outlier_channels(model, family):
    with torch.no_grad():
        for g in norm_groups(model, family):
            model.get_submodule(g.norm).weight[[3, 7]] *= 20
    return model


def test_adalog_installs_its_points_and_keeps_the_fp_function(family_case):
    family, build, make_inputs = family_case
    model = build()
    calib = [(make_inputs(seed=10), torch.zeros(8))]
    x = make_inputs(seed=30)
    with torch.no_grad():
        q = quantize_(copy.deepcopy(model), ptq_config("adalog", "W4A4", **SMOKE), calib)
        points = [m for m in q.modules() if isinstance(m, AdaLogQuantizer)]
        assert {p.point for p in points} == {"attn_probs", "linear_in"}
        assert all(Q_LO <= int(p.base_q) < Q_LO + 128 for p in points)
        with quantization_disabled(q):
            torch.testing.assert_close(forward_logits(q, x), forward_logits(model, x), atol=1e-5, rtol=1e-5)


def test_adalog_beats_minmax_at_w4a4_on_outlier_channels():
    from tests.conftest import image_batch, tiny_vit

    model = with_outlier_channels(tiny_vit(), "vit")
    calib = [(image_batch(n=16, seed=10), torch.zeros(16))]
    x = image_batch(n=16, seed=30)
    with torch.no_grad():
        ref = forward_logits(model, x)
        err = {name: float((forward_logits(quantize_(copy.deepcopy(model), ptq_config(name, "W4A4", **kw), calib), x)
                            - ref).pow(2).mean())
               for name, kw in (("minmax", {}), ("adalog", SMOKE))}
    assert err["adalog"] < 0.5 * err["minmax"], err


def test_adalog_config_errors():
    with pytest.raises(ValueError, match="needs a_bits < 16"):
        ptq_config("adalog", "W4A16")
    with pytest.raises(ValueError, match="base_num"):
        ptq_config("adalog", "W4A4", base_num=200)
    with pytest.raises(ValueError, match="fpcs_width"):
        ptq_config("adalog", "W4A4", fpcs_width=500)
    with pytest.raises(ValueError, match="steps"):
        ptq_config("adalog", "W4A4", steps=0)
    with pytest.raises(ValueError, match="search_rows"):
        ptq_config("adalog", "W4A4", search_rows=0)
    with pytest.raises(ValueError, match="repq_vit"):
        ptq_config("adalog", "W4A4", softmax=False, gelu=False)
