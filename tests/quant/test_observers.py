import pytest
import torch

from arnq.quant.fake_quant import calc_qparams, fake_quantize, quant_range
from arnq.quant.observers import OBSERVERS, EMAObserver, MinMaxObserver, OMSEObserver, PercentileObserver


def _l2(x, lo, hi, bits):
    scale, zp = calc_qparams(lo, hi, bits, False)
    return float((fake_quantize(x, scale, zp, *quant_range(bits, False)) - x).pow(2).mean())


def test_minmax_tracks_running_extremes():
    obs = MinMaxObserver(8, False)
    obs.update(torch.tensor([-1.0, 2.0]))
    obs.update(torch.tensor([-3.0, 1.0]))
    assert obs.range() == (torch.tensor(-3.0), torch.tensor(2.0))


def test_minmax_per_channel_reduces_other_axes():
    obs = MinMaxObserver(8, True, axis=0)
    obs.update(torch.tensor([[1.0, -2.0], [0.5, 4.0]]))
    lo, hi = obs.range()
    assert lo.tolist() == [-2.0, 0.5] and hi.tolist() == [1.0, 4.0]


def test_ema_follows_fq_vit_update():
    obs = EMAObserver(8, False, sigma=0.1)
    obs.update(torch.tensor([0.0, 10.0]))
    obs.update(torch.tensor([0.0, 20.0]))
    assert obs.range()[1].item() == pytest.approx(10 + 0.1 * (20 - 10))


def test_percentile_clips_rare_outliers():
    x = torch.randn(100_000, generator=torch.Generator().manual_seed(0))
    x[:5] = 1000.0
    obs = PercentileObserver(8, False, pct=0.9999)
    obs.update(x)
    lo, hi = obs.range()
    assert 3.0 < hi.item() < 5.0 and -5.0 < lo.item() < -3.0


def test_percentile_auto_picks_least_l2_candidate():
    x = torch.randn(200_000, generator=torch.Generator().manual_seed(1))
    obs = PercentileObserver(4, False, pct="auto")
    obs.update(x)
    lo, hi = obs.range()
    errors = {}
    for p in PercentileObserver.AUTO_CANDIDATES:
        c_lo, c_hi = torch.quantile(x[:100_000], 1 - p), torch.quantile(x[:100_000], p)
        errors[p] = _l2(x, c_lo, c_hi, 4)
    assert _l2(x, lo, hi, 4) <= min(errors.values()) * 1.05


def test_omse_beats_minmax_on_heavy_tails():
    torch.manual_seed(0)
    x = torch.distributions.StudentT(3.0).sample((100_000,))
    omse, minmax = OMSEObserver(4, False), MinMaxObserver(4, False)
    omse.update(x)
    minmax.update(x)
    o_lo, o_hi = omse.range()
    m_lo, m_hi = minmax.range()
    assert o_hi < m_hi  # the range shrank
    assert _l2(x, o_lo, o_hi, 4) < 0.7 * _l2(x, m_lo, m_hi, 4)


@pytest.mark.parametrize("name", ["percentile", "omse"])
def test_search_observers_refuse_per_channel(name):
    with pytest.raises(ValueError, match="per-tensor only"):
        OBSERVERS[name](8, False, 0)


def test_observer_without_data_says_what_to_do():
    with pytest.raises(RuntimeError, match="calibration"):
        MinMaxObserver(8, False).range()
