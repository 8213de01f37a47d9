"""Shipped FP checkpoints: used when spec and sha256 match, retraining on a changed spec, refused when corrupt."""

from __future__ import annotations

import dataclasses
import json
import logging

import pytest
import torch

from arnq.cache import load_state
from arnq.models import MODELS, build_model, load_model
from arnq.models import ship as ship_cli
from arnq.models import shipped as shipped_mod
from arnq.models.shipped import ShippedCheckpointError, shipped_checkpoint, shipped_spec, write_shipped
from arnq.ptq import ptq_config
from harness.pipeline import TrialSpec
from tests.models.test_fp import TINY_VIT


@pytest.fixture
def shipped_dir(monkeypatch, tmp_path):
    """TINY_VIT registered, trained once through the FP cache and shipped into a temporary folder."""
    monkeypatch.setitem(MODELS._entries, TINY_VIT.name, TINY_VIT)
    directory = tmp_path / "checkpoints"
    monkeypatch.setattr(shipped_mod, "CHECKPOINT_DIR", directory)
    trained = load_model(TINY_VIT.name, cache_root=tmp_path / "train-cache", calib_size=16, shipped=False)
    info = json.loads((trained.checkpoint.parent / "train.json").read_text())
    write_shipped(TINY_VIT, 0, trained.checkpoint, info)
    return directory, trained


def test_load_model_uses_the_shipped_checkpoint_without_training(shipped_dir, tmp_path):
    directory, trained = shipped_dir
    manifest = json.loads((directory / f"{TINY_VIT.name}-seed0.json").read_text())
    assert (
        manifest["spec"] == shipped_spec(TINY_VIT, 0)
        and manifest["train"]["test_accuracy"] == trained.fp_accuracy
    )
    assert set(manifest["produced_by"]) == {"commit", "dirty", "versions", "machine"}
    loaded = load_model(TINY_VIT.name, cache_root=tmp_path / "empty-cache", calib_size=16)
    assert loaded.checkpoint == directory / f"{TINY_VIT.name}-seed0.safetensors"
    assert loaded.cache_hit is None and loaded.fp_accuracy == trained.fp_accuracy
    assert not (tmp_path / "empty-cache").exists()  # nothing trained, nothing cached
    for k, v in trained.model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[k], v), k
    # another seed has no shipped checkpoint: it trains (and caches) as before
    assert load_model(TINY_VIT.name, cache_root=tmp_path / "seed1", calib_size=16, seed=1).cache_hit is False


def test_a_changed_recipe_retrains_instead_of_using_the_shipped_weights(
    shipped_dir, monkeypatch, tmp_path, caplog
):
    changed = dataclasses.replace(TINY_VIT, recipe=dataclasses.replace(TINY_VIT.recipe, lr=1e-3))
    monkeypatch.setitem(MODELS._entries, TINY_VIT.name, changed)
    with caplog.at_level(logging.WARNING, logger="arnq.models.shipped"):
        assert shipped_checkpoint(changed, 0) is None
    assert "differs in: recipe" in caplog.text and "python -m arnq.models.ship" in caplog.text
    loaded = load_model(TINY_VIT.name, cache_root=tmp_path / "cache2", calib_size=16)
    assert loaded.cache_hit is False and loaded.checkpoint.parent.parent == tmp_path / "cache2" / "fp_models"


def test_a_corrupted_shipped_file_fails_with_the_fix(shipped_dir, tmp_path):
    directory, _ = shipped_dir
    path = directory / f"{TINY_VIT.name}-seed0.safetensors"
    path.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:0\n")
    with pytest.raises(ShippedCheckpointError, match=r"Git LFS pointer.*python -m arnq.models.ship tiny_vit"):
        load_model(TINY_VIT.name, cache_root=tmp_path / "cache3", calib_size=16)


def test_the_fine_tune_key_names_the_shipped_weights(shipped_dir, monkeypatch, tmp_path):
    spec = TrialSpec(model=TINY_VIT.name, ptq=ptq_config("minmax", "W4A4"))
    sha = json.loads((shipped_dir[0] / f"{TINY_VIT.name}-seed0.json").read_text())["sha256"]
    assert spec.finetune_spec()["fp_weights"] == sha
    assert "fp_weights" not in dataclasses.replace(spec, fp_seed=1).finetune_spec()


def test_the_shipping_command_trains_snapshots_and_ships(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(MODELS._entries, TINY_VIT.name, TINY_VIT)
    monkeypatch.setattr(shipped_mod, "CHECKPOINT_DIR", tmp_path / "package")
    snaps = tmp_path / "snaps"
    argv = [TINY_VIT.name, "--cache", str(tmp_path / "cache"), "--snapshots", str(snaps), "--threads", "1"]
    argv += ["--dir", str(tmp_path / "checkpoints")]
    assert ship_cli.main(argv) == 0
    assert f"shipped {TINY_VIT.name} seed 0" in capsys.readouterr().out
    epochs = sorted(p.name for p in snaps.iterdir())
    assert epochs == [f"epoch{e + 1:02d}.safetensors" for e in range(TINY_VIT.recipe.epochs)]
    ship = shipped_checkpoint(TINY_VIT, 0, tmp_path / "checkpoints")
    last, final = load_state(snaps / epochs[-1]), ship.load()
    assert all(torch.equal(last[k], final[k]) for k in final)  # the last snapshot is the shipped model
    assert not (tmp_path / "package").exists()
    with pytest.raises(SystemExit):  # pretrained models have nothing to ship
        ship_cli.main(["minilm_rt"])


def test_the_shipped_vit_fmnist_matches_its_registered_spec():
    """The package's own shipped checkpoint stands in for vit_fmnist's FP training (else: regenerate it)."""
    spec = MODELS.get("vit_fmnist")
    ship = shipped_checkpoint(spec, 0)
    assert ship is not None, "regenerate it: python -m arnq.models.ship vit_fmnist"
    state = ship.load()  # verifies the sha256
    build_model(spec).load_state_dict(state)  # strict: the architecture matches
    assert ship.test_accuracy >= 0.90
