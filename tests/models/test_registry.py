"""ModelSpec validation, registry lookups and the `arnq ls models` listing."""

from __future__ import annotations

import dataclasses

import pytest

from arnq.models import MODELS, describe_models, load_model
from arnq.registry import UnknownNameError


def test_unknown_model_did_you_mean():
    with pytest.raises(UnknownNameError, match="Did you mean 'vit_mnist'"):
        MODELS.get("vit_mnst")
    with pytest.raises(ValueError, match="Did you mean 'deit_tiny'"):
        load_model("deit_tiyn")


def test_describe_models_rows():
    rows = {r["name"]: r for r in describe_models()}
    assert set(rows) == set(MODELS.names())
    assert {n for n, r in rows.items() if r["embedded"]} == {"vit_mnist", "minilm_rt", "vit_fmnist", "minilm_tweets"}
    assert rows["vit_mnist"]["weights"] == "trained from scratch"
    assert rows["deit_tiny"]["fp_training"] == "none (pretrained)"
    assert rows["minilm_rt"]["fp_training"] == "2 ep, lr 0.0001, bs 32 on 4000 examples"
    assert all(
        set(r) == {"name", "family", "dataset", "embedded", "weights", "fp_training", "description"}
        for r in rows.values()
    )


def test_model_spec_validation_names_field():
    base = MODELS.get("vit_mnist")
    with pytest.raises(ValueError, match=r"family='cnn' is invalid"):
        dataclasses.replace(base, family="cnn")
    with pytest.raises(ValueError, match=r"recipe=None is invalid"):
        dataclasses.replace(base, recipe=None)
    with pytest.raises(ValueError, match=r"max_length=None is invalid"):
        dataclasses.replace(MODELS.get("minilm_rt"), max_length=None)
    with pytest.raises(ValueError, match=r"weights_id='nofolder' is invalid"):
        dataclasses.replace(MODELS.get("minilm_rt"), weights_id="nofolder")
    with pytest.raises(TypeError):
        base.arch["depth"] = 12  # frozen arch mapping
