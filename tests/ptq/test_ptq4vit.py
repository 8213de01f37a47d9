"""PTQ4ViT: Hessian-guided search beats min-max steps, head-wise q/k/v steps, twin-uniform layout, exact FP restore."""

import copy

import pytest
import torch
from torch import nn

import arnq.ptq.ptq4vit  # noqa: F401  (registers the method)
from arnq.batch import forward_logits
from arnq.ptq import PTQ4ViTConfig, ptq_config, quantize_
from arnq.ptq.ptq4vit import _importance, _LinearSite
from arnq.quant import point_summary, quantization_disabled, quantizers, sqnr_db
from arnq.quant.api import QuantConfig
from arnq.quant.modules import QuantConv2d, QuantLinear
from arnq.quant.quantizer import FakeQuantizer
from arnq.quant.twin_uniform import TwinGeluQuantizer, TwinSoftmaxQuantizer, scale_grid
from tests.conftest import image_batch, text_batch, tiny_bert, tiny_vit


def _calib(make_inputs, n=2):
    return [(make_inputs(seed=10 + i), torch.zeros(8, dtype=torch.long)) for i in range(n)]


# ---------------------------------------------------------------- the Hessian-guided search on one Linear


def _linear_problem(rows: int, seed: int):
    """A Linear whose few high-gradient output channels have small weights and the rest large ones."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(rows, 64, generator=gen)
    x[:, :2] *= 8  # two outlier input channels
    grad = torch.full((rows, 32), 0.05)
    grad[:, :4] = 5.0 * (1 + torch.rand(rows, 4, generator=gen))
    return x, grad


def _quant_linear(bits: int = 4) -> QuantLinear:
    torch.manual_seed(0)
    linear = nn.Linear(64, 32)
    with torch.no_grad():
        linear.weight.mul_(0.1)
        linear.weight[4:] *= 10  # low-gradient channels set the min-max range
    qcfg = QuantConfig(w_bits=bits, a_bits=bits, w_granularity="channel", w_symmetric=False, a_symmetric=False)
    return QuantLinear(linear, FakeQuantizer(qcfg.weight_spec(bits), "weight"),
                       FakeQuantizer(qcfg.act_spec(bits), "linear_in"))


def _searched(module: QuantLinear, x, grad, metric_grad: bool) -> QuantLinear:
    module = copy.deepcopy(module)
    site = _LinearSite("fc", module, groups=1)
    with torch.no_grad():
        y = module(x)
    site.chunks = [(x, y, grad if metric_grad else None, torch.ones(len(x)))]
    site.absmax = x.abs().amax()
    with torch.no_grad():
        site.search(scale_grid(), rounds=3)
    return module


def _hessian_error(module: QuantLinear, x, grad) -> float:
    """sum((∂L/∂O ⊙ (O - Ô))²) on rows the search did not see."""
    with torch.no_grad():
        reference = module(x)
        for q in (module.weight_quantizer, module.input_quantizer):
            q.quantizing = True
        out = module(x)
        for q in (module.weight_quantizer, module.input_quantizer):
            q.quantizing = False
    return float((grad * (out - reference)).square().sum())


def test_hessian_search_beats_minmax_and_output_mse_on_held_out_rows():
    bits = 4
    base = _quant_linear(bits)
    x, grad = _linear_problem(512, seed=0)
    x_test, grad_test = _linear_problem(2048, seed=1)
    minmax = copy.deepcopy(base)
    half = 2 ** (bits - 1)
    w_step = base.weight.detach().abs().max() / (half - 0.5)  # the official initial (min-max) steps
    minmax.weight_quantizer.set_qparams(torch.full((32,), float(w_step)), torch.full((32,), float(half)))
    minmax.input_quantizer.set_qparams(x.abs().max() / (half - 0.5), torch.tensor(float(half)))
    hessian = _searched(base, x, grad, metric_grad=True)
    mse = _searched(base, x, grad, metric_grad=False)
    errors = {name: _hessian_error(m, x_test, grad_test) for name, m in
              (("minmax", minmax), ("hessian", hessian), ("mse", mse))}
    # measured: hessian 504, output-MSE search 2823, min-max 3915
    assert errors["hessian"] < 0.3 * errors["minmax"], errors
    assert errors["hessian"] < 0.4 * errors["mse"], errors
    # layer-wise weights: one step for every output channel
    assert hessian.weight_quantizer.scale.unique().numel() == 1


def test_importance_draws_skip_rows_without_gradient_and_are_unbiased():
    score = torch.tensor([[0.0, 1.0, 3.0, 0.0, 4.0], [0.0, 0.0, 0.0, 0.0, 0.0]])
    index, weight = _importance(score, 64, torch.Generator().manual_seed(0))
    assert not torch.isin(index[0], torch.tensor([0, 3])).any()  # zero-gradient rows are never drawn
    # draws ∝ score, weighted 1/(count·p): the weighted sum of the score is its total exactly
    assert float((weight[0] * score[0, index[0]]).sum()) == pytest.approx(8.0)
    assert float(weight[1].sum()) == pytest.approx(5.0)  # no gradient at all: uniform draws


# ---------------------------------------------------------------- the method on the tiny models


def test_layout_on_vit_and_exact_fp_restore():
    model, inputs = tiny_vit(), image_batch(seed=20)
    with torch.no_grad():
        reference = forward_logits(model, inputs)
    q = quantize_(copy.deepcopy(model), PTQ4ViTConfig(w_bits=4, a_bits=4), _calib(image_batch))
    assert point_summary(q) == {"weight": 10, "linear_in": 9, "attn_q": 2, "attn_k": 2, "attn_v": 2, "attn_probs": 2}
    assert all(isinstance(m, FakeQuantizer) and m.quantizing for _, m in quantizers(q))
    for name, module in q.named_modules():
        if isinstance(module, QuantConv2d):  # patch embedding: per-channel weights, FP image
            assert module.input_quantizer is None and module.weight_quantizer.spec.bits == 4
            assert module.weight_quantizer.scale.unique().numel() == module.out_channels
        elif isinstance(module, QuantLinear):
            distinct = module.weight_quantizer.scale.unique().numel()
            assert distinct == (3 if name.endswith("qkv") else 1), name  # q/k/v thirds, else one per layer
            assert isinstance(module.input_quantizer, TwinGeluQuantizer) == name.endswith("fc2"), name
            assert module.weight_quantizer.spec.bits == 4  # the head too (edge_bits="body")
    probs = [m for _, m in quantizers(q) if m.point == "attn_probs"]
    assert all(isinstance(m, TwinSoftmaxQuantizer) for m in probs)
    with torch.no_grad():
        assert sqnr_db(reference, forward_logits(q, inputs)) > 3.0
        with quantization_disabled(q):
            torch.testing.assert_close(forward_logits(q, inputs), reference, atol=1e-5, rtol=0)


def _qkv_head_steps(model: nn.Module) -> list[torch.Tensor]:
    """The (4,) per-head steps of q, k and v in block 0, checking each is constant over its 16 channels."""
    q = quantize_(model, PTQ4ViTConfig(w_bits=8, a_bits=8), _calib(image_batch))
    steps = []
    for part in q.blocks[0].attn.qkv.output_quantizer.parts:
        assert part.spec.granularity == "channel" and part.spec.axis == -1
        per_channel = part.scale.view(4, 16)  # tiny ViT: 4 heads of 16 channels
        assert torch.equal(per_channel, per_channel[:, :1].expand(-1, 16))
        steps.append(per_channel[:, 0])
    return steps


def test_headwise_steps_follow_the_range_of_each_head():
    q_ref, k_ref, _ = _qkv_head_steps(tiny_vit())
    model = tiny_vit()
    with torch.no_grad():  # head 0 of q becomes 8x wider
        model.blocks[0].attn.qkv.weight[:16] *= 8
        model.blocks[0].attn.qkv.bias[:16] *= 8
    q_steps, k_steps, _ = _qkv_head_steps(model)
    assert float(q_steps[0] / q_ref[0]) == pytest.approx(8, rel=0.25), (q_steps, q_ref)
    torch.testing.assert_close(q_steps[1:], q_ref[1:], rtol=0.1, atol=0)  # the other heads keep their steps
    torch.testing.assert_close(k_steps, k_ref, rtol=0.1, atol=0)


def test_bert_points_and_padding_left_out():
    labels = torch.zeros(8, dtype=torch.long)
    calib = [(text_batch(seed=10, pad_first=6), labels), (text_batch(seed=11), labels)]
    exact = PTQ4ViTConfig(w_bits=6, a_bits=6, search_rows=None, attn_instances=None, attn_query_rows=None)
    q = quantize_(tiny_bert(), exact, calib)
    for name, module in q.named_modules():
        if isinstance(module, QuantLinear):
            post_gelu = name.endswith("output.dense") and "attention" not in name
            assert isinstance(module.input_quantizer, TwinGeluQuantizer) == post_gelu, name
    assert sum(isinstance(m, TwinSoftmaxQuantizer) for _, m in quantizers(q)) == 2
    # padding tokens carry large fake activations: the steps must not see them
    padded = copy.deepcopy(calib)
    padded[0][0]["input_ids"][0, -6:] = 119
    q_padded = quantize_(tiny_bert(), exact, padded)
    steps = {n: m.scale for n, m in quantizers(q)}
    for name, module in quantizers(q_padded):
        torch.testing.assert_close(module.scale, steps[name], rtol=1e-5, atol=0, msg=name)
    # the same tokens counted as real do move the steps
    unmasked = copy.deepcopy(padded)
    unmasked[0][0]["attention_mask"][:] = 1
    q_unmasked = quantize_(tiny_bert(), exact, unmasked)
    moved = [n for n, m in quantizers(q_unmasked) if not torch.allclose(m.scale, steps[n], rtol=1e-3)]
    assert len(moved) > 10, moved


def test_weight_only_bits_quantize_only_weights():
    q = quantize_(tiny_vit(), PTQ4ViTConfig(w_bits=4, a_bits=16), _calib(image_batch))
    assert set(point_summary(q)) == {"weight"}


def test_edge_bits_option_keeps_the_project_edges():
    q = quantize_(tiny_vit(), PTQ4ViTConfig(w_bits=4, a_bits=4, edge_bits=8), _calib(image_batch))
    assert q.head.weight_quantizer.spec.bits == 8 and q.head.input_quantizer.spec.bits == 8
    assert q.patch_embed.proj.weight_quantizer.spec.bits == 8
    assert q.blocks[0].mlp.fc1.weight_quantizer.spec.bits == 4


@pytest.mark.parametrize("params, field", [
    ({"alpha": 1.5}, "alpha"), ({"n_grid": 0}, "n_grid"), ({"metric": "cosine"}, "metric"),
    ({"hessian_loss": "kl"}, "hessian_loss"), ({"w_granularity": "row"}, "w_granularity"),
    ({"edge_bits": 12}, "edge_bits"), ({"search_rows": 0}, "search_rows"),
])
def test_config_errors_name_the_field(params, field):
    with pytest.raises(ValueError, match=field):
        ptq_config("ptq4vit", **params)
