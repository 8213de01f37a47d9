"""ARNQ noise: distribution, step size, adaptivity and schedule wiring, measured on tiny models."""

import copy

import pytest
import torch

from arnq.arms import DiffQConfig
from arnq.arms.noise import NoiseConfig, NoiseInjector, noise_variance, target_key
from arnq.quant import QuantConfig
from arnq.quant.fake_quant import calc_qparams, fake_quantize
from arnq.quant.quantizer import FakeQuantizer
from tests.conftest import image_batch, tiny_bert, tiny_vit


def _injector(cfg, model=None, w_bits=4, a_bits=4, seed=0, **scheme):
    return NoiseInjector(model or tiny_vit(), cfg, QuantConfig(w_bits=w_bits, a_bits=a_bits, **scheme), seed=seed)


def _point_of(inj, quantizer):
    return next(p for p in inj.points if p is quantizer.noise)


@pytest.mark.parametrize("dist", ["uniform", "gaussian"])
def test_activation_noise_has_the_specified_variance_and_zero_mean(dist):
    inj = _injector(NoiseConfig(delta_observer="target", target="A", dist=dist, schedule="constant", alpha_max=0.7))
    inj.model.train()
    inj.on_step(0, 100)
    q = inj.model.blocks[0].mlp.fc1.input_quantizer
    x = torch.randn(64, 50, 64, generator=torch.Generator().manual_seed(3)) * 2
    noise = q(x) - x
    point = _point_of(inj, q)
    delta = float((x.max() - x.min()) / 15)  # per-tensor asymmetric min-max step at 4 bits
    assert float(point.delta) == pytest.approx(delta, rel=1e-5)
    expected = noise_variance(delta, 0.7, point.gamma, dist)
    assert float(noise.var()) == pytest.approx(expected, rel=0.03)
    assert abs(float(noise.mean())) < 0.02 * expected**0.5
    if dist == "uniform":
        assert float(noise.abs().max()) <= 0.7 * delta / 2 + 1e-6


def test_no_noise_at_evaluation():
    inj = _injector(NoiseConfig(delta_observer="target", target="WA", schedule="constant"))
    inj.on_step(0, 10)
    model = inj.model.eval()
    reference = tiny_vit()
    with torch.no_grad():
        torch.testing.assert_close(model(image_batch()), reference(image_batch()), atol=1e-6, rtol=0)
        model.train()
        assert (model(image_batch()) - reference(image_batch())).abs().max() > 1e-3  # noise is on in training


def test_weight_noise_uses_per_channel_symmetric_step():
    inj = _injector(NoiseConfig(delta_observer="target", target="W", dist="uniform", schedule="constant"), w_bits=4)
    inj.model.train()
    inj.on_step(0, 10)
    layer = inj.model.blocks[1].attn.proj
    noisy = layer.weight_quantizer(layer.weight)
    point = _point_of(inj, layer.weight_quantizer)
    expected = layer.weight.detach().abs().amax(dim=1) / 7  # max|W_c| / (2^(b-1) - 1)
    torch.testing.assert_close(point.delta, expected)
    per_channel_bound = (noisy - layer.weight).abs().amax(dim=1)
    assert torch.all(per_channel_bound <= expected / 2 + 1e-7)


def test_diffq_ablation_uses_one_minmax_bin_per_tensor():
    inj = _injector(DiffQConfig().noise(), w_bits=3)
    inj.model.train()
    inj.on_step(0, 10)
    layer = inj.model.blocks[0].mlp.fc2
    layer.weight_quantizer(layer.weight)
    point = _point_of(inj, layer.weight_quantizer)
    w = layer.weight.detach()
    assert float(point.delta) == pytest.approx(float((w.max() - w.min()) / 7), rel=1e-5)


def test_schedule_drives_alpha():
    inj = _injector(NoiseConfig(delta_observer="target", target="A", schedule="linear", warmup_frac=0.5, alpha_max=2.0))
    inj.on_step(0, 100)
    assert all(p.alpha == 0.0 for p in inj.points)
    inj.on_step(25, 100)
    assert all(p.alpha == pytest.approx(1.0) for p in inj.points)
    inj.on_step(100, 100)
    assert all(p.alpha == pytest.approx(2.0) for p in inj.points)


def test_outlier_adaptivity_favours_the_layer_with_outlier_channels():
    model = tiny_vit()
    with torch.no_grad():
        model.blocks[1].norm2.weight[:2] *= 60  # planted outlier channels at the input of blocks[1].mlp.fc1
    inj = _injector(NoiseConfig(delta_observer="target", target="A", adapt="outlier", schedule="constant", refresh=1), model=model)
    inj.model.train()
    for step in range(3):
        inj.on_step(step, 10)
        inj.model(image_batch(seed=step))
    inj.on_step(3, 10)  # gamma is recomputed from the statistics gathered so far
    gamma = {id(p): p.gamma for p in inj.points}
    planted = gamma[id(inj.model.blocks[1].mlp.fc1.input_quantizer.noise)]
    clean = gamma[id(inj.model.blocks[0].mlp.fc1.input_quantizer.noise)]
    assert planted > 1.5 * clean
    assert sum(gamma.values()) / len(gamma) == pytest.approx(1.0, rel=0.3)  # normalised to mean 1 before clipping


def test_bernoulli_mask_rate_and_grid():
    inj = _injector(NoiseConfig(delta_observer="target", target="A", dist="bernoulli", bernoulli_p=0.3, schedule="constant"))
    inj.model.train()
    inj.on_step(0, 10)
    q = inj.model.blocks[0].attn.qkv.input_quantizer
    x = torch.randn(32, 50, 64, generator=torch.Generator().manual_seed(5))
    out = q(x)
    changed = out != x
    assert changed.float().mean().item() == pytest.approx(0.3, abs=0.02)
    point = _point_of(inj, q)
    on_grid = fake_quantize(x, point.delta, point.zero_point, 0, 15)
    assert torch.equal(out[changed], on_grid[changed])  # a masked element is moved onto the 4-bit grid, exactly
    assert (on_grid != x)[changed].all()


def test_delta_refreshes_on_schedule():
    inj = _injector(NoiseConfig(delta_observer="target", target="A", schedule="constant", refresh=5))
    inj.model.train()
    q = inj.model.blocks[0].mlp.fc1.input_quantizer
    point = _point_of(inj, q)
    inj.on_step(0, 20)
    q(torch.ones(4, 3, 64) * torch.linspace(-1, 1, 64))
    first = float(point.delta)
    for step in range(1, 5):
        inj.on_step(step, 20)
        q(torch.ones(4, 3, 64) * torch.linspace(-10, 10, 64))
    assert float(point.delta) == first  # not refreshed yet
    inj.on_step(5, 20)
    q(torch.ones(4, 3, 64) * torch.linspace(-10, 10, 64))
    assert float(point.delta) == pytest.approx(20 / 15, rel=1e-5)


def test_sensitivity_adaptivity_uses_gradients():
    inj = _injector(NoiseConfig(delta_observer="target", target="A", adapt="sensitivity", schedule="constant", refresh=1))
    inj.model.train()
    for step in range(2):
        inj.on_step(step, 10)
        inj.model(image_batch(seed=step)).pow(2).mean().backward()
    inj.on_step(2, 10)
    gammas = [p.gamma for p in inj.points]
    assert all(p.stats.grad_sq is not None for p in inj.points)
    assert max(gammas) > min(gammas)


def test_bert_padding_is_excluded_and_modules_filter():
    from tests.conftest import text_batch

    inj = NoiseInjector(tiny_bert(), NoiseConfig(delta_observer="target", target="A", modules=("*.layer.*[0-9].output.dense",)),
                        QuantConfig(w_bits=4, a_bits=4))
    assert len(inj.points) == 2  # the FFN output Linear of each of the 2 layers (not attention.output.dense)

    def deltas(batch):  # each point's step and kurtosis from one training batch (marked as training marks it)
        from arnq.batch import token_mask
        from arnq.quant.quantizer import token_mask_context

        model = copy.deepcopy(inj.model)
        fresh = NoiseInjector(model, NoiseConfig(delta_observer="target", target="A", modules=("*.layer.*[0-9].output.dense",)),
                              QuantConfig(w_bits=4, a_bits=4))
        model.train()
        fresh.on_step(0, 10)
        torch.manual_seed(0)  # the same dropout masks for every batch
        with torch.no_grad(), token_mask_context(token_mask(batch)):
            model(**batch)
        return [(float(p.delta), p.stats.kurtosis) for p in fresh.points]

    batch = text_batch(pad_first=6)
    other_pads = {**batch, "input_ids": batch["input_ids"].clone()}
    other_pads["input_ids"][0, -6:] = torch.arange(100, 106)  # what sits under the padding: not seen by the observer
    assert deltas(other_pads) == deltas(batch)
    unmasked = {**other_pads, "attention_mask": torch.ones_like(batch["attention_mask"])}
    assert deltas(unmasked) != deltas(batch)  # the same tokens counted as real ones do move the statistics


@pytest.mark.parametrize("kwargs", [{"target": "X"}, {"dist": "laplace"}, {"adapt": "hessian"}, {"refresh": 0},
                                    {"alpha_max": -1.0}, {"delta_observer": "mse"}, {"schedule": "cosin"}])
def test_config_validation(kwargs):
    with pytest.raises(ValueError):
        NoiseConfig(**({"delta_observer": "target"} | kwargs))


def test_rounding_noise_fades_the_fake_quant_forward_in_with_alpha():
    from arnq.quant.fake_quant import fake_quantize

    inj = _injector(NoiseConfig(delta_observer="target", target="A", dist="rounding", schedule="linear", warmup_frac=0.5))
    inj.model.train()
    q = inj.model.blocks[0].mlp.fc1.input_quantizer
    point = _point_of(inj, q)
    x = torch.randn(8, 50, 64, generator=torch.Generator().manual_seed(7), requires_grad=True)
    inj.on_step(0, 10)
    assert torch.equal(q(x), x)  # alpha 0 at the start of the warm-up
    inj.on_step(5, 10)  # alpha = 1: exactly the fake-quantized tensor, with the identity's gradient
    out = q(x)
    expected = fake_quantize(x.detach(), point.delta, point.zero_point, 0, 15)
    assert torch.allclose(out, expected, atol=1e-6)
    out.sum().backward()
    assert torch.equal(x.grad, torch.ones_like(x))
    inj.on_step(2, 10)  # alpha 0.4 during the warm-up: 0.4 of the rounding error on every element
    half = q(x.detach())
    assert point.alpha == pytest.approx(0.4)
    assert torch.allclose(half - x.detach(), 0.4 * (expected - x.detach()), atol=1e-5)
    inj.model.eval()
    assert torch.equal(q(x.detach()), x.detach())


def test_default_recipe_is_the_fake_quant_forward_once_warmed_up():
    """The documented recipe (results/ARNQ.md) on the uniform grid: after the linear warm-up every
    Linear input carries its real rounding error at the target step (Bernoulli mask at rate 1)."""
    from arnq.quant.fake_quant import fake_quantize

    cfg = NoiseConfig()
    assert (cfg.dist, cfg.bernoulli_p, cfg.target, cfg.schedule, cfg.ptq_aware) == ("bernoulli", 1.0, "WA", "linear", True)
    inj = _injector(NoiseConfig(delta_observer="target", target="A"))
    inj.model.train()
    q = inj.model.blocks[0].mlp.fc1.input_quantizer
    point = _point_of(inj, q)
    x = torch.randn(8, 50, 64, generator=torch.Generator().manual_seed(11))
    inj.on_step(0, 10)
    assert torch.equal(q(x), x)  # alpha 0: the warm-up starts from the clean forward
    inj.on_step(5, 10)
    torch.testing.assert_close(q(x), fake_quantize(x, point.delta, point.zero_point, 0, 15))


def test_per_token_target_rounds_each_token_on_its_own_step():
    """A per-token target: at alpha = gamma = 1 the rounding noise is exactly the per-token fake-quantized tensor."""
    inj = _injector(NoiseConfig(delta_observer="target", target="A", dist="rounding", schedule="constant"), a_granularity="token")
    inj.model.train()
    inj.on_step(0, 10)
    q = inj.model.blocks[0].mlp.fc1.input_quantizer
    point = _point_of(inj, q)
    assert point.per_token and (point.alpha, point.gamma) == (1.0, 1.0)
    gen = torch.Generator().manual_seed(13)
    x = torch.randn(8, 50, 64, generator=gen) * torch.logspace(-1, 1, 50).unsqueeze(-1)  # token ranges 0.1x..10x
    out = q(x)
    per_token = FakeQuantizer(QuantConfig(a_bits=4, a_granularity="token").act_spec(4), "linear_in")
    per_token.quantizing = True
    torch.testing.assert_close(out, per_token(x))
    per_tensor = FakeQuantizer(QuantConfig(a_bits=4).act_spec(4), "linear_in")
    per_tensor.set_qparams(*calc_qparams(x.min(), x.max(), 4, False))
    per_tensor.quantizing = True
    assert not torch.allclose(out, per_tensor(x), atol=1e-3)  # one shared step would round differently


def test_target_key_names_what_the_noise_depends_on():
    tensor, token = QuantConfig(w_bits=4, a_bits=4), QuantConfig(w_bits=4, a_bits=4, a_granularity="token")
    assert target_key(NoiseConfig(delta_observer="target", target="A"), tensor) != target_key(NoiseConfig(delta_observer="target", target="A"), token)
    assert target_key(NoiseConfig(delta_observer="target", target="W"), tensor) == target_key(NoiseConfig(delta_observer="target", target="W"), token) \
        == {"w_bits": 4, "w_symmetric": True}
    fixed = NoiseConfig(target="A", delta_observer="minmax")  # its own observer: the target's does not matter
    assert target_key(fixed, tensor) == target_key(fixed, token)
