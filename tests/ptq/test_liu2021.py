"""Liu et al. 2021: Pearson search, ranking loss, bias correction and nuclear-norm mixed precision."""

import copy

import pytest
import torch

from arnq.batch import forward_logits
from arnq.ptq import Liu2021Config, MinMaxConfig, quantize_
from arnq.ptq.liu2021 import allocate_bits, correct_bias, pearson, ranking_loss, search_linear
from arnq.quant.modules import QuantLinear
from arnq.quant.quantizer import FakeQuantizer, QuantSpec
from tests.conftest import image_batch, text_batch, tiny_bert, tiny_vit


def test_pearson_is_the_correlation_of_the_flat_tensors():
    x = torch.randn(50, 4, generator=torch.Generator().manual_seed(0))
    assert pearson(x, 2 * x + 1) == pytest.approx(1.0)
    assert pearson(x, -x) == pytest.approx(-1.0)
    y = torch.randn(50, 4, generator=torch.Generator().manual_seed(1))
    assert pearson(x, y) == pytest.approx(float(torch.corrcoef(torch.stack([x.flatten(), y.flatten()]))[0, 1]), abs=1e-6)


def test_ranking_loss_counts_only_flipped_pairs():
    fp = torch.tensor([[0.5, 0.3, 0.2]])
    i, j = torch.tensor([0, 1, 0]), torch.tensor([1, 2, 2])
    assert float(ranking_loss(fp, fp.clone(), i, j, margin=0.0)) == 0.0
    flipped = torch.tensor([[0.3, 0.5, 0.2]])  # pair (0, 1) flipped by 0.2
    assert float(ranking_loss(fp, flipped, i, j, margin=0.0)) == pytest.approx(0.2 / 3)
    # the margin also charges correctly ordered pairs closer than theta
    assert float(ranking_loss(fp, fp, i, j, margin=0.15)) == pytest.approx((0.15 - 0.1) / 3)


def _layer_with_heavy_tails(seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.distributions.StudentT(2.0).sample((2048, 64))  # heavy tails: min-max ranges are too wide
    w = torch.randn(32, 64, generator=gen) * 0.1
    w[:, 0] *= 8  # one large weight per row widens every row's min-max step
    return x, w, torch.randn(32, generator=gen) * 0.1


def test_pearson_search_beats_min_max_steps_at_4_bits():
    torch.manual_seed(0)
    x, w, b = _layer_with_heavy_tails()
    in_q = FakeQuantizer(QuantSpec(4), "linear_in")
    in_q.start_observing()
    in_q.observe(x)
    in_q.finish_observing()
    grid = torch.linspace(0.5, 1.2, 50)
    target = torch.nn.functional.linear(x, w, b)

    def corr(w_scale, x_scale):
        q = in_q.qmax
        xq = torch.fake_quantize_per_tensor_affine(x, float(x_scale), int(in_q.zero_point), 0, q)
        wq = torch.clamp(torch.round(w / w_scale.unsqueeze(1)), -7, 7) * w_scale.unsqueeze(1)
        return pearson(target, torch.nn.functional.linear(xq, wq, b))

    w_scale, x_scale = search_linear(x, w, b, 4, in_q, grid, rounds=2)
    minmax = corr(w.abs().amax(dim=1) / 7, in_q.scale)
    searched = corr(w_scale, x_scale)
    assert searched > minmax + 0.01, (searched, minmax)
    assert float(x_scale) < float(in_q.scale)  # clipping the heavy tail wins


def test_bias_correction_zeroes_the_mean_output_error():
    x, w, b = _layer_with_heavy_tails(1)
    x = x + 0.5  # a non-zero input mean, so weight rounding errors shift the output mean
    linear = torch.nn.Linear(64, 32)
    with torch.no_grad():
        linear.weight.copy_(w)
        linear.bias.copy_(b)
    wq = FakeQuantizer(QuantSpec(3, True, "channel", 0), "weight")
    wq.start_observing()
    wq.observe(w)
    wq.finish_observing()
    wq.quantizing = True
    module = QuantLinear(linear, wq)
    fp = torch.nn.functional.linear(x, w, b)
    with torch.no_grad():
        before = (module(x) - fp).mean(dim=0).abs().max()
        correct_bias(module, x)
        after = (module(x) - fp).mean(dim=0).abs().max()
    assert float(before) > 1e-3
    assert float(after) < 1e-4


def test_mixed_precision_gives_sensitive_layers_more_bits_within_the_budget():
    sens = {"a": 100.0, "b": 10.0, "c": 1.0, "d": 1.0}
    sizes = {"a": 100, "b": 100, "c": 100, "d": 100}
    bits = allocate_bits(sens, sizes, range(4, 9), avg_bits=6)
    assert sum(bits[n] * sizes[n] for n in bits) <= 6 * 400
    assert bits["a"] > bits["b"] >= bits["c"] and bits["a"] == 8
    assert sum(bits.values()) == 24  # the budget is used
    with pytest.raises(ValueError, match="mp_avg_bits"):
        allocate_bits(sens, sizes, range(4, 9), avg_bits=3)


def test_mixed_precision_model_respects_the_size_budget():
    model = tiny_vit()
    calib = [(image_batch(seed=10 + i), torch.zeros(8)) for i in range(2)]
    cfg = Liu2021Config(w_bits=6, a_bits=8, candidates=5, attention_candidates=3, rounds=1, mp_avg_bits=5.5)
    q = quantize_(copy.deepcopy(model), cfg, calib)
    bits = q.arnq_weight_bits
    sizes = {n: q.get_submodule(n).weight.numel() for n in bits}
    assert set(bits.values()) <= set(range(4, 9)) and len(set(bits.values())) > 1
    assert sum(bits[n] * sizes[n] for n in bits) <= 5.5 * sum(sizes.values())
    for name, b in bits.items():
        assert q.get_submodule(name).weight_quantizer.spec.bits == b
    with torch.no_grad():
        assert torch.isfinite(forward_logits(q, image_batch(seed=3))).all()


def test_ranking_search_moves_the_q_and_k_steps():
    model = tiny_vit()
    calib = [(image_batch(seed=10 + i), torch.zeros(8)) for i in range(2)]
    base = quantize_(copy.deepcopy(model), MinMaxConfig(w_bits=4, a_bits=4), calib)
    q = quantize_(copy.deepcopy(model), Liu2021Config(w_bits=4, a_bits=4, candidates=5, attention_candidates=8, rounds=1),
                  calib)
    parts = lambda m: m.get_submodule("blocks.0.attn.qkv").output_quantizer.parts  # noqa: E731
    moved = [float(parts(q)[i].scale) != pytest.approx(float(parts(base)[i].scale)) for i in (0, 1)]
    assert any(moved)


@pytest.mark.parametrize("family", ["vit", "bert"])
def test_the_attention_search_reusing_its_projections_gives_the_same_model(family, monkeypatch):
    import contextlib

    import arnq.ptq.liu2021 as liu

    if family == "vit":
        model, calib = tiny_vit(), [(image_batch(seed=10 + i), torch.zeros(8)) for i in range(2)]
    else:
        model, calib = tiny_bert(), [(text_batch(seed=10 + i, pad_first=3), torch.zeros(8)) for i in range(2)]
    cfg = Liu2021Config(w_bits=4, a_bits=4, candidates=5, attention_candidates=6, rounds=2)
    reused = quantize_(copy.deepcopy(model), cfg, calib)
    monkeypatch.setattr(liu, "_fixed_projections", lambda module, calls: contextlib.nullcontext())
    recomputed = quantize_(copy.deepcopy(model), cfg, calib)
    for (name, a), (_, b) in zip(reused.named_buffers(), recomputed.named_buffers(), strict=True):
        assert torch.equal(a, b), name  # every step, zero point and corrected bias bit for bit
    for (name, a), (_, b) in zip(reused.named_parameters(), recomputed.named_parameters(), strict=True):
        assert torch.equal(a, b), name
