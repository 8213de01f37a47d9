"""Activation diagnostics: pooled moments equal direct ones, outlier channels show up, padding is ignored."""

import pytest
import torch

from arnq.arms.diagnostics import MomentAccumulator, activation_stats, linear_input_stats, summarize
from arnq.arms.sites import capture, find_sites
from arnq.batch import forward_logits, token_mask
from arnq.quant.quantizer import valid_values
from tests.conftest import image_batch, text_batch, tiny_bert, tiny_vit


def _direct_stats(model, batches) -> dict[str, dict[str, float]]:
    """Stats from the concatenated (unpadded) activations of every batch, in float64."""
    values: dict[str, list[torch.Tensor]] = {}
    with torch.no_grad():
        for inputs, _ in batches:
            with capture(model, find_sites(model)) as acts:
                forward_logits(model, inputs)
            for name, act in acts.items():
                values.setdefault(name, []).append(valid_values(act, token_mask(inputs)).flatten().double())
    out = {}
    for name, parts in values.items():
        x = torch.cat(parts)
        c = x - x.mean()
        var = c.pow(2).mean()
        out[name] = {
            "kurtosis": float(c.pow(4).mean() / var**2),
            "std": float(var.sqrt()),
            "absmax": float(x.abs().max()),
            "mean": float(x.mean()),
        }
    return out


@pytest.mark.parametrize(
    "build, batches",
    [
        (tiny_vit, [(image_batch(n=3, seed=s), torch.zeros(3)) for s in (1, 2)]),
        (tiny_bert, [(text_batch(n=3, seed=s, pad_first=4 * s), torch.zeros(3)) for s in (1, 2)]),
    ],
)
def test_pooled_moments_equal_direct_computation(build, batches):
    model = build()
    stats = activation_stats(model, batches)
    direct = _direct_stats(model, batches)
    assert set(stats) == set(direct)
    for name, row in stats.items():
        for field, value in direct[name].items():
            assert row[field] == pytest.approx(value, abs=1e-4, rel=1e-6), (name, field)
        assert row["max_over_sigma"] == pytest.approx(row["absmax"] / row["std"], rel=1e-9)


def test_accumulator_is_stable_under_a_large_offset():
    gen = torch.Generator().manual_seed(0)
    chunks = [1000.0 + torch.rand(5000, generator=gen) for _ in range(3)]
    acc = MomentAccumulator()
    for chunk in chunks:
        acc.update(chunk)
    result = acc.result()
    assert result["kurtosis"] == pytest.approx(1.8, abs=0.02)  # uniform, despite the mean of 1000
    assert result["std"] == pytest.approx(12**-0.5, rel=0.01)


def test_planted_outlier_channel_raises_its_site_only():
    batches = [(image_batch(n=4), torch.zeros(4))]
    base = activation_stats(tiny_vit(), batches)
    model = tiny_vit()
    with torch.no_grad():
        model.blocks[0].norm2.weight[5] *= 50.0
    spiked = activation_stats(model, batches)
    site = "post_ln/blocks.0.norm2"
    assert spiked[site]["max_over_sigma"] > 2 * base[site]["max_over_sigma"]
    assert spiked[site]["kurtosis"] > 5 * base[site]["kurtosis"]
    assert spiked["post_ln/blocks.0.norm1"] == base["post_ln/blocks.0.norm1"]  # upstream of the change


def test_padding_positions_do_not_change_stats():
    model = tiny_bert()
    inputs = text_batch(n=4, pad_first=6)
    other = {k: v.clone() for k, v in inputs.items()}
    other["input_ids"][0, -6:] = torch.arange(50, 56)  # different tokens where the mask is 0
    with torch.no_grad(), capture(model, find_sites(model, ["fc2_in"])) as acts:
        forward_logits(model, inputs)
        padded_a = acts["fc2_in/bert.encoder.layer.0.output.dense"][0, -6:].clone()
        forward_logits(model, other)
        padded_b = acts["fc2_in/bert.encoder.layer.0.output.dense"][0, -6:]
    assert (padded_a - padded_b).abs().max() > 1e-2  # the padded activations really differ
    for stats_fn in (activation_stats, linear_input_stats):
        a, b = stats_fn(model, [(inputs, None)]), stats_fn(model, [(other, None)])
        for name in a:
            for field in ("kurtosis", "absmax", "std"):
                assert a[name][field] == pytest.approx(b[name][field], rel=1e-5, abs=1e-6), (name, field)


def test_linear_input_stats_cover_every_linear():
    model = tiny_vit()
    batches = [(image_batch(n=2), torch.zeros(2))]
    stats = linear_input_stats(model, batches)
    n_linear = sum(isinstance(m, torch.nn.Linear) for m in model.modules())
    assert len(stats) == n_linear == 9
    sites = activation_stats(model, batches, kinds=["fc2_in"])
    assert stats["linear_in/blocks.1.mlp.fc2"] == pytest.approx(sites["fc2_in/blocks.1.mlp.fc2"])


def test_mode_restored_and_max_batches_and_hooks():
    model = tiny_bert().train()
    batches = [(text_batch(n=2, seed=s), None) for s in (1, 2, 3)]
    first = activation_stats(model, batches, max_batches=1)
    assert first == activation_stats(model, batches[:1])  # eval mode: dropout off, so repeatable
    assert first != activation_stats(model, batches)
    assert model.training and all(m.training for m in model.modules())
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())
    with pytest.raises(ValueError, match="no batches"):
        activation_stats(model, [])


def test_summarize_groups_by_kind():
    stats = {
        "post_ln/a": {"max_over_sigma": 4.0, "kurtosis": 3.0},
        "post_ln/b": {"max_over_sigma": 8.0, "kurtosis": 5.0},
        "fc2_in/c": {"max_over_sigma": 30.0, "kurtosis": 20.0},
    }
    assert summarize(stats) == {
        "post_ln": {"n_sites": 2, "max_over_sigma_mean": 6.0, "max_over_sigma_max": 8.0,
                    "kurtosis_mean": 4.0, "kurtosis_max": 5.0},
        "fc2_in": {"n_sites": 1, "max_over_sigma_mean": 30.0, "max_over_sigma_max": 30.0,
                   "kurtosis_mean": 20.0, "kurtosis_max": 20.0},
    }
