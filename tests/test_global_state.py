"""Library calls leave the process as they found it: RNG states, determinism flags, environment, threads."""

import random

import numpy as np
import pytest
import torch

from arnq.arms import arm_config
from arnq.finetune import FinetuneConfig, finetune
from arnq.models import build_model
from arnq.ptq import ptq_config, quantize_
from tests.conftest import image_batch, tiny_vit
from tests.test_finetune import _loaded


def _process_state() -> dict:
    return {
        "torch_rng": torch.get_rng_state(), "python_rng": random.getstate(), "numpy_rng": np.random.get_state(),
        "deterministic": torch.are_deterministic_algorithms_enabled(),
        "warn_only": torch.is_deterministic_algorithms_warn_only_enabled(),
        "cudnn": (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark),
        "threads": torch.get_num_threads(), "environ": dict(__import__("os").environ),
    }


def _assert_same(before: dict, after: dict) -> None:
    assert torch.equal(before["torch_rng"], after["torch_rng"])
    assert before["python_rng"] == after["python_rng"]
    np.testing.assert_array_equal(before["numpy_rng"][1], after["numpy_rng"][1])
    assert {k: v for k, v in before.items() if "rng" not in k} == {k: v for k, v in after.items() if "rng" not in k}


@pytest.mark.parametrize("call", ["finetune", "build_model", "quantize_"])
def test_library_calls_leave_global_state_untouched(call):
    loaded, model = _loaded(), tiny_vit()  # the test's own models seed the global RNG: built before
    torch.manual_seed(1234)
    random.seed(1234)
    np.random.seed(1234)
    before = _process_state()
    if call == "finetune":
        ft = FinetuneConfig(epochs=1, lr=1e-3, batch_size=32, train_subset=64, val_size=32, diagnostics_batches=1)
        finetune(loaded, arm_config("arnq"), ft, ptq_config("minmax", "W4A4", calib_size=32), seed=5, num_threads=1)
    elif call == "build_model":
        build_model("vit_mnist", seed=7)
    else:
        quantize_(model, ptq_config("liu2021", "W4A4", **{"candidates": 5, "rounds": 1, "search_rows": 64}),
                  [(image_batch(), torch.zeros(8))])
    _assert_same(before, _process_state())
