"""QuantTune outlier loss and KURE: exact zeros, hand-computed values, gradient direction, masking."""

import math

import pytest
import torch

from arnq.arms.outlier import OutlierLossConfig, kure_loss, kurtosis, outlier_loss
from arnq.arms.sites import capture, find_sites
from arnq.batch import forward_logits, token_mask
from tests.conftest import text_batch, tiny_bert

N_OUT = 6  # planted outliers


def _gaussian(seed: int = 0, shape=(4, 32, 64)) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _with_outliers(seed: int = 0, value: float = 25.0) -> torch.Tensor:
    a = _gaussian(seed)
    a[1, 3, :N_OUT] = value  # (B, T, C): outliers in one token of example 1
    return a


def _reference(a: torch.Tensor, k: float, p: float) -> float:
    """mean(relu(|a - mu| - k sigma) ** p) in float64 from scratch."""
    x = a.double().flatten()
    mu, sigma = x.mean(), x.std(unbiased=False)
    return float(((x - mu).abs() - k * sigma).clamp_min(0).pow(p).mean())


def test_zero_when_nothing_is_beyond_k_sigma():
    uniform = torch.rand(4, 32, 64, generator=torch.Generator().manual_seed(0))  # max |x - mu| ~ 1.73 sigma
    loss, stats = outlier_loss({"u": uniform}, OutlierLossConfig(lam=1.0, k=4.0))
    assert loss.item() == 0.0
    assert stats["u"]["frac_beyond"] == 0.0
    assert stats["u"]["max_dev_over_sigma"] == pytest.approx(math.sqrt(3), abs=0.01)


@pytest.mark.parametrize("p", [1, 2, 3])
def test_planted_outliers_give_the_hand_computed_loss(p):
    a = _with_outliers()
    cfg = OutlierLossConfig(lam=0.5, k=4.0, p=p)
    loss, stats = outlier_loss({"a": a}, cfg)
    expected = 0.5 * _reference(a, 4.0, p)
    assert expected > 0
    assert loss.item() == pytest.approx(expected, rel=1e-4)
    assert stats["a"]["term"] == pytest.approx(expected / 0.5, rel=1e-4)
    assert stats["a"]["frac_beyond"] * a.numel() == pytest.approx(N_OUT, abs=2)  # Gaussian tail beyond 4 sigma is ~1e-4


def test_gradient_step_pulls_outliers_in_and_leaves_the_rest():
    a = _with_outliers().requires_grad_(True)
    loss, _ = outlier_loss({"a": a}, OutlierLossConfig(lam=1.0, k=4.0, p=2))
    loss.backward()
    with torch.no_grad():
        mu, sigma = a.mean(), a.std(unbiased=False)
        beyond = (a - mu).abs() > 4 * sigma
        assert beyond.sum() >= N_OUT
        assert (a.grad[~beyond] == 0).all()
        assert (a.grad[beyond] * (a - mu)[beyond] > 0).all()  # descent moves them toward the mean
        stepped = a - (a.numel() / 4) * a.grad  # step = half the excess for p = 2
        assert (stepped - stepped.mean()).abs().max() < 0.8 * (a - mu).abs().max()


def test_range_weighting_favours_the_layer_with_outliers():
    acts = {"clean": _gaussian(1), "spiky": _with_outliers(2)}
    cfg = OutlierLossConfig(lam=1.0, weighting="range")
    loss, stats = outlier_loss(acts, cfg)
    w_clean, w_spiky = stats["clean"]["weight"], stats["spiky"]["weight"]
    assert w_spiky > 3 * w_clean
    assert (w_clean + w_spiky) / 2 == pytest.approx(1.0)  # normalised to mean 1
    assert loss.item() == pytest.approx(w_clean * stats["clean"]["term"] + w_spiky * stats["spiky"]["term"], rel=1e-5)
    uniform_loss, uniform_stats = outlier_loss(acts, OutlierLossConfig(lam=1.0))
    assert uniform_stats["spiky"]["weight"] == 1.0
    assert loss.item() > uniform_loss.item()  # the budget moved to the site with the larger penalty


def test_padding_positions_are_excluded():
    a = torch.rand(4, 32, 64, generator=torch.Generator().manual_seed(3))  # nothing beyond 4 sigma
    a[0, -4:, :N_OUT] = 40.0  # outliers only in the last 4 (padded) tokens of example 0
    mask = torch.ones(4, 32, dtype=torch.long)  # an attention_mask, long as tokenizers give it
    mask[0, -4:] = 0
    cfg = OutlierLossConfig(lam=1.0)
    assert outlier_loss({"a": a}, cfg)[0].item() > 0
    masked, stats = outlier_loss({"a": a}, cfg, mask=mask)
    assert masked.item() == 0.0
    assert stats["a"]["max_dev_over_sigma"] == pytest.approx(math.sqrt(3), abs=0.01)


def test_normalize_makes_the_loss_scale_free():
    a = _with_outliers()
    for normalize, ratio in ((False, 100.0), (True, 1.0)):
        cfg = OutlierLossConfig(lam=1.0, p=2, normalize=normalize)
        small, big = outlier_loss({"a": a}, cfg)[0], outlier_loss({"a": 10 * a}, cfg)[0]
        assert (big / small).item() == pytest.approx(ratio, rel=1e-4)


def test_without_stats_gives_the_same_loss():
    acts = {"a": _with_outliers(), "b": _gaussian(5)}
    cfg = OutlierLossConfig(weighting="range")
    loss, stats = outlier_loss(acts, cfg, with_stats=False)
    assert stats == {}
    assert loss.item() == pytest.approx(outlier_loss(acts, cfg)[0].item(), rel=1e-6)
    assert outlier_loss({}, cfg)[0].item() == 0.0


def test_loss_on_captured_bert_activations_reaches_the_weights():
    model = tiny_bert()
    inputs = text_batch(n=4, pad_first=5)
    cfg = OutlierLossConfig(lam=1.0, k=2.0)  # k = 2 so a random-init model has values beyond k sigma
    with capture(model, find_sites(model, cfg.sites)) as acts:
        forward_logits(model, inputs)
        loss, stats = outlier_loss(acts, cfg, mask=token_mask(inputs))
    assert len(stats) == 10 and loss.item() > 0
    loss.backward()
    assert model.bert.encoder.layer[0].output.dense.weight.grad.abs().sum() > 0


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"lam": -1.0}, "lam"),
        ({"k": 0.0}, "k"),
        ({"p": 0.5}, "p"),
        ({"weighting": "ranged"}, "weighting"),
        ({"sites": ("post_ln", "fc2")}, "sites"),
        ({"sites": ()}, "sites"),
    ],
)
def test_config_validation(kwargs, field):
    with pytest.raises(ValueError, match=f"^{field}="):
        OutlierLossConfig(**kwargs)


def test_kurtosis_of_gaussian_and_uniform():
    gen = torch.Generator().manual_seed(0)
    assert kurtosis(torch.randn(100_000, generator=gen)).item() == pytest.approx(3.0, abs=0.1)
    assert kurtosis(torch.rand(100_000, generator=gen)).item() == pytest.approx(1.8, abs=0.02)
    assert kurtosis(torch.tensor([-1.0, 1.0])).item() == pytest.approx(1.0)  # two points: the minimum


def test_kure_gradient_step_moves_kurtosis_toward_uniform():
    w = torch.randn(64, 64, generator=torch.Generator().manual_seed(0)).requires_grad_(True)
    before = kurtosis(w).item()
    loss = kure_loss([w])
    assert loss.item() == pytest.approx((before - 1.8) ** 2, rel=1e-5)
    loss.backward()
    with torch.no_grad():
        after = kurtosis(w - 20.0 * w.grad).item()
    assert 1.8 < after < before - 0.5
    assert kure_loss([]).item() == 0.0
