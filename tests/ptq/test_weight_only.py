"""Weight-only PTQ (GPTQ, AWQ, AdaRound): each beats round-to-nearest on the same grid; GPTQ's grids."""

import copy

import pytest
import torch

from arnq.batch import forward_logits
from arnq.ptq import PTQ_METHODS, GPTQConfig, ptq_config, quantize_
from arnq.ptq.gptq import (
    GRIDS,
    GroupWeightQuantizer,
    gptq_quantize,
    gptq_quantize_weight,
    grid_qparams,
    install_weights,
    rtn_weight,
)
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
    assert output_mse(rounded, w, x) < 0.9 * output_mse(rtn_weight(w, bits, grid="sym_narrow"), w, x)
    codes = rounded / scales.unsqueeze(1)
    torch.testing.assert_close(codes, codes.round(), atol=1e-4, rtol=0)  # on the grid
    assert (codes - (w / scales.unsqueeze(1))).abs().max() < 1 + 1e-4  # only ever floor or ceil


def code_range(bits: int, grid: str) -> tuple[int, int]:
    """The integer codes of a grid: 0..2^b-1 around a zero point, or -(2^(b-1)-1)..2^(b-1)-1 for sym_narrow."""
    return (-(2 ** (bits - 1) - 1), 2 ** (bits - 1) - 1) if grid == "sym_narrow" else (0, 2**bits - 1)


@pytest.mark.parametrize("grid", GRIDS)
@pytest.mark.parametrize("bits", [3, 4])
@pytest.mark.parametrize("group_size, act_order", [(None, False), (16, False), (None, True), (16, True)])
def test_gptq_beats_round_to_nearest(bits, group_size, act_order, grid):
    w, x = correlated_layer()
    h = 2 * x.T @ x / x.shape[0]
    q, scales, zeros = gptq_quantize(w, h, bits, grid=grid, group_size=group_size, act_order=act_order, blocksize=16)
    assert output_mse(q, w, x) < 0.5 * output_mse(rtn_weight(w, bits, group_size, grid=grid), w, x)
    # every GPTQ weight lies on its row's (group's) grid
    col_scale, col_zero = ((t.unsqueeze(1) if group_size is None else t.repeat_interleave(group_size, dim=1))
                           for t in (scales, zeros))
    codes = q / col_scale + col_zero
    torch.testing.assert_close(codes, codes.round(), atol=1e-4, rtol=0)
    qmin, qmax = code_range(bits, grid)
    assert codes.min() >= qmin - 1e-4 and codes.max() <= qmax + 1e-4
    assert torch.equal(zeros, zeros.round()) and ((zeros >= 0) & (zeros <= 2**bits - 1)).all()
    if grid == "sym_narrow":  # the scales-only entry point other methods call
        q_narrow, scales_narrow = gptq_quantize_weight(w, h, bits, group_size=group_size, act_order=act_order,
                                                       blocksize=16)
        assert torch.equal(q_narrow, q) and torch.equal(scales_narrow, scales) and not zeros.any()


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
def test_asym_grid_is_the_official_min_max_grid(bits):
    """Per row: [min(w, 0), max(w, 0)] over 2^b - 1 steps, integer zero point, codes 0..2^b-1; RTN on it is
    torch's per-channel fake quantization with those parameters."""
    w = torch.randn(16, 24, generator=torch.Generator().manual_seed(bits))
    w[3] = w[3].abs()  # no negative weight: the grid starts at 0 (zero point 0)
    w[5] = -w[5].abs()  # no positive weight: the grid ends at 0 (zero point 2^b-1)
    w[7] = 0.0  # as the official code: an all-zero row gets the range [-1, 1]
    scale, zero = grid_qparams(w, bits, "asym")
    lo, hi = w.amin(dim=1).clamp(max=0), w.amax(dim=1).clamp(min=0)
    lo[7], hi[7] = -1.0, 1.0
    torch.testing.assert_close(scale, (hi - lo) / (2**bits - 1), rtol=0, atol=0)
    assert torch.equal(zero, torch.round(-lo / scale))
    assert zero[3] == 0 and zero[5] == 2**bits - 1 and ((zero >= 0) & (zero <= 2**bits - 1)).all()
    # the grid reaches the row's extremes to within half a step, and holds 0 exactly
    assert ((-zero * scale - lo).abs() <= scale / 2 + 1e-6).all()
    assert (((2**bits - 1 - zero) * scale - hi).abs() <= scale / 2 + 1e-6).all()
    reference = torch.fake_quantize_per_channel_affine(w, scale, zero.int(), 0, 0, 2**bits - 1)
    torch.testing.assert_close(rtn_weight(w, bits), reference, rtol=0, atol=1e-6)
    assert (rtn_weight(w, bits)[7] == 0).all()
    levels = (rtn_weight(w, bits) / scale.unsqueeze(1) + zero.unsqueeze(1)).round()
    assert levels.min() == 0 and levels.max() == 2**bits - 1  # both ends of the grid are used


def test_sym_grid_is_the_official_sym_grid():
    """--sym: 2^b levels around the zero point 2^(b-1), scale 2 max|w| / (2^b-1); as the official code, a row
    without a negative weight keeps its lower end at 0 (scale max(w) / (2^b-1))."""
    bits = 4
    w = torch.randn(8, 32, generator=torch.Generator().manual_seed(0))
    w[2] = w[2].abs()
    scale, zero = grid_qparams(w, bits, "sym")
    expected = 2 * w.abs().amax(dim=1) / 15
    expected[2] = w[2].amax() / 15
    torch.testing.assert_close(scale, expected, rtol=0, atol=0)
    assert (zero == 8).all()
    codes = rtn_weight(w, bits, grid="sym") / scale.unsqueeze(1)
    assert codes.round().min() >= -8 and codes.round().max() <= 7


@pytest.mark.parametrize("grid", GRIDS)
@pytest.mark.parametrize("group_size, act_order", [(None, False), (8, False), (8, True)])
def test_gptq_without_correlated_inputs_is_round_to_nearest(grid, group_size, act_order):
    """With H a multiple of the identity no error is fed back: GPTQ gives exactly RTN on the same grid."""
    w = torch.randn(16, 32, generator=torch.Generator().manual_seed(1))
    q, _, _ = gptq_quantize(w, 3 * torch.eye(32), 3, grid=grid, group_size=group_size, act_order=act_order,
                            blocksize=8)
    assert torch.equal(q, rtn_weight(w, 3, group_size, grid=grid))


@pytest.mark.parametrize("grid", GRIDS)
@pytest.mark.parametrize("group_size", [None, 16])
def test_installed_gptq_weights_are_fixed_points_bit_for_bit(grid, group_size):
    w, x = correlated_layer()
    q, scales, zeros = gptq_quantize(w, 2 * x.T @ x / x.shape[0], 3, grid=grid, group_size=group_size)
    module = QuantLinear(torch.nn.Linear(64, 32), None)
    install_weights(module, q, scales, 3, group_size, None if grid == "sym_narrow" else zeros)
    quantizer = module.weight_quantizer
    assert (quantizer.qmin, quantizer.qmax) == code_range(3, grid)
    quantizer.quantizing = True
    assert torch.equal(quantizer(module.weight), module.weight)
    # per row the grid is the original weight's, so quantizing that is RTN (not under sym, whose rows' max|w|
    # lies half a step past an end of the grid: a tie w / s and w * (1/s) may break differently)
    if group_size is None and grid != "sym":
        torch.testing.assert_close(quantizer(w), rtn_weight(w, 3, grid=grid), rtol=0, atol=1e-6)


def outlier_layer(seed: int = 0, n: int = 2048, d_in: int = 128, d_out: int = 64):
    """A 64x128 Linear (weights N(0, 0.1^2)) whose inputs are N(0, 1) but for four outlier channels (x10)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d_in, generator=gen)
    x[:, [3, 17, 64, 100]] *= 10
    return 0.1 * torch.randn(d_out, d_in, generator=gen), x


def test_official_asym_grid_beats_symmetric_narrow_grid_on_outlier_channels():
    """W3 GPTQ output MSE on the outlier layer: asym 0.241, sym 0.314, sym_narrow 0.434 (seed 0; asym / sym_narrow
    0.53 to 0.68 over seeds 0-19)."""
    w, x = outlier_layer()
    h = 2 * x.T @ x / x.shape[0]
    err = {grid: output_mse(gptq_quantize(w, h, 3, grid=grid)[0], w, x) for grid in GRIDS}
    assert err["asym"] < 0.75 * err["sym_narrow"], err
    assert err["asym"] < err["sym"] < err["sym_narrow"], err
    for grid in GRIDS:
        assert err[grid] < output_mse(rtn_weight(w, 3, grid=grid), w, x), grid


@pytest.mark.parametrize("grid", GRIDS)
def test_gptq_model_weights_are_fixed_points_of_their_quantizers(grid):
    cfg = GPTQConfig(w_bits=4, a_bits=16, group_size=16, grid=grid)
    model = quantize_(tiny_vit(), cfg, [(image_batch(), torch.zeros(8))])
    linears = [m for n, m in model.named_modules() if isinstance(m, QuantLinear) and "blocks" in n]
    assert linears and all(isinstance(m.weight_quantizer, GroupWeightQuantizer) for m in linears)
    for m in linears:
        assert (m.weight_quantizer.qmin, m.weight_quantizer.qmax) == code_range(4, grid)
        assert torch.equal(m.weight_quantizer(m.weight), m.weight)


def test_gptq_default_grid_is_the_official_asymmetric_one():
    assert GPTQConfig().grid == "asym"


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
     ("gptq", {"blocksize": 0}, "blocksize"), ("gptq", {"grid": "symmetric"}, "asym.*sym.*sym_narrow"), ("awq", {"max_shrink": 1.0}, "max_shrink"),
     ("awq", {"n_grid": 1}, "n_grid"), ("adaround", {"warmup": 1.0}, "warmup"), ("adaround", {"iters": 0}, "iters")],
)
def test_bad_params_name_the_fix(method, params, message):
    with pytest.raises(ValueError, match=message):
        ptq_config(method, **params)
