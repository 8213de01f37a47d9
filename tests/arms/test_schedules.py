"""Noise schedules: end points, warm-up, monotonicity, validation and the plot."""

import pytest

from arnq.arms.schedules import SCHEDULES, describe_schedules, plot_schedules, schedule_value

TOTAL = 1000
PARAMS = {"alpha_max": 0.5, "warmup_frac": 0.2, "n_steps": 4}


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_every_schedule_ends_at_alpha_max_and_clamps_beyond(name):
    assert schedule_value(name, TOTAL, TOTAL, **PARAMS) == pytest.approx(0.5, abs=1e-12)
    assert schedule_value(name, 3 * TOTAL, TOTAL, **PARAMS) == pytest.approx(0.5, abs=1e-12)


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_every_schedule_is_monotone_non_decreasing(name):
    values = [schedule_value(name, s, TOTAL, **PARAMS) for s in range(TOTAL + 1)]
    assert all(b >= a for a, b in zip(values[:-1], values[1:], strict=True))
    assert min(values) >= 0


@pytest.mark.parametrize("name", ["linear", "cosine", "step"])
def test_rising_schedules_start_at_or_below_alpha_max_over_n(name):
    assert schedule_value(name, 0, TOTAL, **PARAMS) <= 0.5 / PARAMS["n_steps"] + 1e-12


def test_exact_values():
    assert schedule_value("linear", 0, TOTAL, **PARAMS) == 0.0
    assert schedule_value("linear", 100, TOTAL, **PARAMS) == pytest.approx(0.25)
    assert schedule_value("linear", 199, TOTAL, **PARAMS) < 0.5
    assert schedule_value("linear", 200, TOTAL, **PARAMS) == 0.5  # warm-up ends exactly here
    assert schedule_value("linear", 700, TOTAL, **PARAMS) == 0.5
    assert schedule_value("linear", 0, TOTAL, alpha_max=0.5, warmup_frac=0.0) == 0.5
    assert schedule_value("cosine", 0, TOTAL, **PARAMS) == 0.0
    assert schedule_value("cosine", 500, TOTAL, **PARAMS) == pytest.approx(0.25)
    stairs = [schedule_value("step", s, TOTAL, **PARAMS) for s in (0, 249, 250, 500, 999, 1000)]
    assert stairs == pytest.approx([0.125, 0.125, 0.25, 0.375, 0.5, 0.5])


def test_constant_is_constant():
    assert {schedule_value("constant", s, TOTAL, alpha_max=0.7) for s in range(0, 2 * TOTAL, 37)} == {0.7}


def test_unknown_name_suggests_the_closest():
    with pytest.raises(ValueError, match="Did you mean 'cosine'"):
        schedule_value("cosin", 0, TOTAL)


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"alpha_max": -0.1}, "alpha_max"),
        ({"warmup_frac": 1.5}, "warmup_frac"),
        ({"warmup_frac": -0.1}, "warmup_frac"),
        ({"n_steps": 0}, "n_steps"),
        ({"n_steps": 2.5}, "n_steps"),
        ({"total": 0}, "total"),
        ({"step": -1}, "step"),
        ({"alpah_max": 1.0}, "alpah_max"),
    ],
)
def test_bad_params_raise(kwargs, field):
    step, total = kwargs.pop("step", 0), kwargs.pop("total", TOTAL)
    with pytest.raises(ValueError, match=field):
        schedule_value("linear", step, total, **kwargs)


def test_describe_lists_every_schedule():
    rows = describe_schedules()
    assert [r["name"] for r in rows] == list(SCHEDULES)
    assert all(r["description"] and "alpha_max" in r["params"] for r in rows)
    assert "warmup_frac" in rows[1]["params"] and "n_steps" in rows[3]["params"]


def test_plot_writes_a_png(tmp_path):
    path = plot_schedules(tmp_path / "plots" / "schedules.png", total=200, alpha_max=0.5)
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000
