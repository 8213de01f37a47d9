"""Short arm-variant labels: the fewest distinguishing parameters, a space's own `label:`, clashes refused."""

import json
from pathlib import Path

import pytest

from harness.report.axes import axes_from_space, short_labels
from harness.space import SpaceError, load_space, parse_space

ROOT = Path(__file__).resolve().parents[3]
SPACES = sorted((ROOT / "search_spaces").glob("*.yaml"))


def _v(arm, **params):
    return (arm, json.dumps(params, sort_keys=True))


def test_a_label_names_only_the_parameters_that_tell_variants_of_an_arm_apart():
    variants = [_v("plain"), _v("arnq"), _v("arnq", delta_observer="minmax"),
                _v("arnq", delta_observer="minmax", bernoulli_p=0.5), _v("quanttune", lam=0.001)]
    assert list(short_labels(variants).values()) == [
        "plain", "arnq", "arnq[delta_observer=minmax]", "arnq[bernoulli_p=0.5,delta_observer=minmax]", "quanttune"]


def test_a_parameter_every_variant_shares_is_left_out():
    variants = [_v("arnq", dist="rounding", schedule="linear"), _v("arnq", dist="rounding", schedule="cosine")]
    assert list(short_labels(variants).values()) == ["arnq[schedule=linear]", "arnq[schedule=cosine]"]


def test_labels_do_not_depend_on_the_order_of_the_variants():
    variants = [_v("plain"), _v("arnq", adapt="outlier"), _v("arnq", schedule="cosine"),
                _v("arnq", adapt="outlier", schedule="cosine")]
    assert short_labels(variants) == short_labels(list(reversed(variants)))


def test_a_space_label_names_its_variant_and_stays_out_of_the_trials():
    space = parse_space({"name": "x", "models": ["vit_mnist"], "bits": ["W4A4"], "ptq": ["minmax"],
                         "arms": ["plain", "arnq", {"name": "arnq", "label": "arnq-minmax", "delta_observer": "minmax"},
                                  {"name": "arnq", "label": "sched", "schedule": ["step", "cosine"]}]})
    assert all("label" not in json.dumps(t.arm.params()) for t in space.trials())
    labels = axes_from_space(space.to_dict()).labels
    assert labels[_v("arnq", delta_observer="minmax")] == "arnq-minmax"
    assert labels[_v("arnq")] == "arnq"
    # a labelled grid: the label, then what tells its points apart
    assert labels[_v("arnq", schedule="cosine")] == "sched[schedule=cosine]"
    assert labels[_v("arnq", schedule="step")] == "sched[schedule=step]"


@pytest.mark.parametrize("arms, message", [
    (["plain", {"name": "arnq", "label": "quanttune"}, "quanttune"], "name more than one arm variant"),
    (["plain", {"name": "arnq", "label": ["x"]}], r"arms\[1\].label"),
    (["plain", {"name": "arnq", "label": "a[b]"}], "without brackets"),
])
def test_a_bad_or_clashing_label_is_refused_before_anything_runs(arms, message):
    with pytest.raises(SpaceError, match=message):
        parse_space({"name": "x", "models": ["vit_mnist"], "bits": ["W4A4"], "ptq": ["minmax"], "arms": arms})


@pytest.mark.parametrize("path", SPACES, ids=[p.stem for p in SPACES])
def test_every_committed_space_has_unique_short_labels(path):
    axes = axes_from_space(load_space(path).to_dict())
    labels = list(axes.labels.values())
    assert len(labels) == len(set(labels)) == len(axes.variants)
    assert all(len(label) <= 48 for label in labels), labels
