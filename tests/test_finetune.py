"""Fine-tuning under each arm on a tiny learnable task: end to end, metrics, checkpoint resume."""

import pytest
import torch
from torch.utils.data import TensorDataset

from arnq.arms import ARMS, arm_config
from arnq.data import TaskData
from arnq.finetune import FinetuneConfig, finetune
from arnq.models import ImageCollate, LoadedModel
from arnq.ptq import ptq_config
from tests.conftest import tiny_vit


class _Images(TensorDataset):
    def subset(self, idx):
        return _Images(*(t[list(idx)] for t in self.tensors))


def _task(n_train=320, n_test=128, seed=0) -> TaskData:
    gen = torch.Generator().manual_seed(seed)

    def make(n):
        x = torch.randn(n, 3, 32, 32, generator=gen)
        y = (x[:, 0, :16].mean(dim=(1, 2)) > 0).long() + 2 * (x[:, 1, 16:].mean(dim=(1, 2)) > 0).long()
        x[:, 2] += y[:, None, None].float()  # a learnable signal
        return _Images(x, y)

    train, test = make(n_train), make(n_test)
    return TaskData(name="toy", task="toy", modality="image", num_classes=4, train=train, calib=train, test=test)


def _loaded() -> LoadedModel:
    model = tiny_vit()
    model.reset_classifier(4)
    return LoadedModel(spec=None, model=model.eval(), data=_task(), collate=ImageCollate(), checkpoint=None,
                       fp_train_seconds=None)


FT = FinetuneConfig(epochs=2, lr=1e-3, batch_size=32, train_subset=160, val_size=64, diagnostics_batches=1)
TARGET = ptq_config("minmax", "W4A4", calib_size=64)


@pytest.mark.parametrize("arm", ARMS.names())
def test_every_arm_fine_tunes_end_to_end(arm):
    loaded = _loaded()
    before = {k: v.clone() for k, v in loaded.model.state_dict().items()}
    result = finetune(loaded, arm_config(arm), FT, TARGET, seed=0)
    assert set(result.state_dict) == set(before)  # an FP checkpoint, whatever the arm installed
    assert all(torch.equal(v, loaded.model.state_dict()[k]) for k, v in before.items())  # input untouched
    assert len(result.history) == 2 and result.steps == 10
    assert 0.0 <= result.history[-1]["q_val_acc"] <= 1.0 and 0.0 <= result.ft_acc <= 1.0
    assert result.diagnostics["before"]["linear_in"] and result.diagnostics["after"]["linear_in"]
    if arm in ("quanttune", "arnq_quanttune", "kure"):
        assert result.history[-1]["extra_loss"] > 0


def test_plain_fine_tune_learns_the_task():
    result = finetune(_loaded(), arm_config("plain"), FinetuneConfig(epochs=4, lr=2e-3, train_subset=256, val_size=64,
                                                                     diagnostics_batches=0), TARGET)
    assert result.ft_acc > 0.6  # four classes: chance is 0.25


@pytest.mark.parametrize("delta_observer", [None, "target"])  # PTQ-aware, and the uniform grid
def test_arnq_resumes_from_checkpoint_to_the_same_weights(tmp_path, delta_observer):
    arm = arm_config("arnq", target="WA", schedule="linear", adapt="outlier", refresh=3, ptq_refresh=3,
                     delta_observer=delta_observer)
    full = finetune(_loaded(), arm, FT, TARGET, seed=3, checkpoint_dir=tmp_path / "a")
    interrupted = finetune(_loaded(), arm, FT, TARGET, seed=3, checkpoint_dir=tmp_path / "b",
                           on_epoch=lambda epoch, record: epoch == 0)
    assert interrupted.stopped_early and len(interrupted.history) == 1
    resumed = finetune(_loaded(), arm, FT, TARGET, seed=3, checkpoint_dir=tmp_path / "b")
    assert resumed.resumed_from_epoch == 1 and len(resumed.history) == 2
    for name, value in full.state_dict.items():
        assert torch.equal(value, resumed.state_dict[name]), name
    assert not any(torch.equal(v, interrupted.state_dict[k]) for k, v in full.state_dict.items() if v.dim() == 2)


def test_bad_arm_params_fail_before_training():
    with pytest.raises(ValueError, match="alpha_maxx"):
        arm_config("arnq", alpha_maxx=1.0)
    with pytest.raises(ValueError, match="Did you mean 'arnq'"):
        arm_config("arnk")
    with pytest.raises(TypeError, match="not a registered fine-tuning arm config"):
        finetune(_loaded(), {"arm": "arnq"}, FT, TARGET)
