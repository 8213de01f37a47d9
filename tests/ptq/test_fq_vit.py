"""FQ-ViT: PTF beats per-tensor min-max on LayerNorm inputs with outlier channels; LIS is a 4-bit log2 softmax."""

import copy

import torch

from arnq.batch import forward_logits
from arnq.ptq import FQViTConfig, quantize_
from arnq.ptq.fq_vit import PTFQuantizer, QuantLayerNorm
from arnq.quant import quantization_disabled
from arnq.quant.fake_quant import calc_qparams, fake_quantize, quant_range
from arnq.quant.log_quant import LogQuantizer


def channel_outliers(n: int = 1024, channels: int = 64, seed: int = 0) -> torch.Tensor:
    """A residual stream: most channels O(1), a few x20 (the inter-channel variation PTF targets)."""
    x = torch.randn(n, channels, generator=torch.Generator().manual_seed(seed))
    x[:, [3, 17, 40]] *= 20
    return x


def test_ptf_beats_per_tensor_min_max_on_channel_outliers():
    x = channel_outliers()
    q = PTFQuantizer(8)
    q.start_observing()
    q(x)
    q.finish_observing()
    q.quantizing = True
    ptf = float((q(x) - x).pow(2).mean())
    scale, zp = calc_qparams(x.min(), x.max(), 8, False)
    minmax = float((fake_quantize(x, scale, zp, *quant_range(8, False)) - x).pow(2).mean())
    assert ptf < 0.2 * minmax
    # steps are the shared step times 1, 2, 4 or 8; the outlier channels get the widest
    ratios = q.scale / q.scale.min()
    assert set(ratios.round().tolist()) <= {1.0, 2.0, 4.0, 8.0}
    assert bool((q.scale[[3, 17, 40]] >= q.scale.median()).all())


def test_fq_vit_points_and_fp_equivalence(family_case):
    family, build, make_inputs = family_case
    model = build()
    calib = [(make_inputs(seed=10 + i), torch.zeros(8)) for i in range(2)]
    q = quantize_(copy.deepcopy(model), FQViTConfig(w_bits=8, a_bits=8), calib)
    norms = [m for m in q.modules() if isinstance(m, QuantLayerNorm)]
    assert norms and all(isinstance(m.input_quantizer, PTFQuantizer) for m in norms)
    probs = [m for m in q.modules() if isinstance(m, LogQuantizer)]
    assert probs and all(p.base == "2" and p.spec.bits == 4 for p in probs)
    assert set(q.state_dict()) == set(model.state_dict())  # parameters shared, keys unchanged
    x = make_inputs(seed=30)
    with torch.no_grad(), quantization_disabled(q):
        torch.testing.assert_close(forward_logits(q, x), forward_logits(model, x), atol=1e-5, rtol=1e-5)


def test_ptf_lowers_the_error_of_a_model_with_outlier_channels():
    """ViT whose residual stream carries x20 channels: PTF on LayerNorm inputs vs the min-max baseline (ptf off)."""
    from tests.conftest import image_batch, tiny_vit

    model = tiny_vit()
    with torch.no_grad():
        model.patch_embed.proj.weight[[3, 17]] *= 20
        model.cls_token.normal_(generator=torch.Generator().manual_seed(0))  # O(1), as in a trained ViT
    calib = [(image_batch(n=16, seed=10 + i), torch.zeros(16)) for i in range(2)]
    x = image_batch(n=16, seed=30)
    with torch.no_grad():
        reference = forward_logits(model, x)
        err = {ptf: float((forward_logits(quantize_(copy.deepcopy(model),
                                                    FQViTConfig(w_bits=8, a_bits=6, ptf=ptf, lis=False), calib), x)
                          - reference).pow(2).mean()) for ptf in (True, False)}
    assert err[True] < 0.5 * err[False], err
