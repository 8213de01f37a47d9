"""Training loop: schedule, convergence, determinism, hooks and length-bucketed batching."""

from __future__ import annotations

import json
import math
import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from arnq.scoped import seeded, set_seed, thread_limit
from arnq.train import (
    RandomAffine,
    SeededBatchSampler,
    TrainConfig,
    evaluate,
    lr_schedule,
    make_loader,
    text_length,
    train_classifier,
)
from tests.golden_machine import machine_fingerprint, same_machine


def blobs(n: int = 512, dim: int = 8, classes: int = 4, seed: int = 0) -> list[tuple[torch.Tensor, int]]:
    """Linearly separable Gaussian blobs: class means 4 apart, unit noise."""
    gen = torch.Generator().manual_seed(seed)
    means = 4.0 * torch.eye(classes, dim)
    labels = torch.randint(classes, (n,), generator=gen)
    x = means[labels] + torch.randn(n, dim, generator=gen)
    return [(x[i], int(labels[i])) for i in range(n)]


def stack_collate(items: list) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.stack([x for x, _ in items]), torch.tensor([y for _, y in items])


def mlp(dim: int = 8, classes: int = 4) -> nn.Module:
    return nn.Sequential(nn.Linear(dim, 32), nn.GELU(), nn.Dropout(0.1), nn.Linear(32, classes))


def run(seed: int = 0, epochs: int = 3, **overrides) -> tuple[nn.Module, dict]:
    set_seed(seed)
    model = mlp()
    cfg = TrainConfig(epochs=epochs, lr=1e-2, batch_size=32, seed=seed)
    train = make_loader(blobs(512, seed=1), stack_collate, 32, shuffle=True, seed=seed)
    test = make_loader(blobs(256, seed=2), stack_collate, 64, shuffle=False)
    result = train_classifier(model, train, cfg, device="cpu", eval_loader=test, **overrides)
    return model, result


def test_lr_schedule_endpoints_and_warmup():
    assert lr_schedule(0, 100, 10) == pytest.approx(0.1)
    assert lr_schedule(4, 100, 10) == pytest.approx(0.5)
    assert lr_schedule(9, 100, 10) == pytest.approx(1.0)
    assert lr_schedule(10, 100, 10) == pytest.approx(1.0)
    assert lr_schedule(55, 100, 10) == pytest.approx(0.5)  # half-way through the cosine
    assert lr_schedule(99, 100, 10) == pytest.approx(0.5 * (1 + math.cos(math.pi * 89 / 90)))
    assert lr_schedule(100, 100, 10) == 0.0
    assert lr_schedule(0, 50, 0) == 1.0
    values = [lr_schedule(s, 100, 10) for s in range(100)]
    assert all(a < b for a, b in zip(values[:9], values[1:10], strict=True))  # rising warm-up
    assert all(a >= b for a, b in zip(values[10:], values[11:], strict=False))  # non-increasing decay
    for bad in [(0, 0, 0), (0, 10, 11), (-1, 10, 1)]:
        with pytest.raises(ValueError, match="lr_schedule"):
            lr_schedule(*bad)


def test_train_config_validation_names_field():
    with pytest.raises(ValueError, match=r"TrainConfig\.lr=-1"):
        TrainConfig(lr=-1)
    with pytest.raises(ValueError, match=r"TrainConfig\.warmup_frac=1\.5"):
        TrainConfig(warmup_frac=1.5)
    with pytest.raises(ValueError, match=r"TrainConfig\.epochs=0"):
        TrainConfig(epochs=0)
    with pytest.raises(ValueError, match=r"TrainConfig\.max_steps=0"):
        TrainConfig(max_steps=0)


def test_mlp_learns_separable_blobs():
    set_seed(0)
    untrained = evaluate(mlp(), make_loader(blobs(256, seed=2), stack_collate, 64, shuffle=False), "cpu")
    model, result = run(epochs=3)
    assert untrained < 0.6
    assert result["eval_accuracy"] > 0.95
    assert result["steps"] == result["total_steps"] == 3 * 16
    assert len(result["history"]) == 3
    assert result["history"][-1]["train_loss"] < result["history"][0]["train_loss"]
    assert result["seconds"] < 20
    assert not model.training  # handed back in eval mode


def test_same_seed_bit_identical_and_other_seed_differs():
    a, ra = run(seed=3)
    b, rb = run(seed=3)
    c, _ = run(seed=4)
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(pa, pb), name
    assert any(
        not torch.equal(pa, pc)
        for pa, pc in zip(a.state_dict().values(), c.state_dict().values(), strict=True)
    )
    assert ra["history"][-1]["train_loss"] == rb["history"][-1]["train_loss"]


#: the weights `test_train_classifier_trains_as_before...` ends with, and the machine that wrote them
#: (`python -m tests.test_train` rewrites it; tests.golden_machine says why the machine matters)
REFERENCE_WEIGHTS = Path(__file__).parent / "golden" / "train_weights.json"


def _process_state() -> dict:
    """Everything process-wide a library call could leave changed: RNGs, determinism flags, threads, env."""
    numpy_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state().tolist(),
        "torch_seed": torch.initial_seed(),
        "python": random.getstate(),
        "numpy": (*numpy_state[:1], numpy_state[1].tolist(), *numpy_state[2:]),
        "flags": (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
                  torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark),
        "threads": torch.get_num_threads(),
        "env": dict(os.environ),
    }


@pytest.fixture
def caller_state():
    """A caller with its own seeds and non-default cuDNN flags, put back as found after the test."""
    flags = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
             torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    torch.use_deterministic_algorithms(False)
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = False, True
    random.seed(11)
    np.random.seed(12)
    torch.manual_seed(13)
    yield
    torch.use_deterministic_algorithms(flags[0], warn_only=flags[1])
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = flags[2:]


def _reference_setup():
    torch.manual_seed(123)
    model = mlp()  # dropout: training draws from the global torch RNG, so the seeding order shows in the weights
    return model, make_loader(blobs(256, seed=1), stack_collate, 32, shuffle=True, seed=5)


def _reference_train(model: nn.Module, train) -> nn.Module:
    train_classifier(model, train, TrainConfig(epochs=2, lr=1e-2, batch_size=32, seed=5), num_threads=1)
    return model


def test_train_classifier_trains_as_before_and_leaves_the_callers_state_alone(caller_state):
    model, train = _reference_setup()
    before = _process_state()
    _reference_train(model, train)
    assert _process_state() == before
    reference = json.loads(REFERENCE_WEIGHTS.read_text())
    for name, value in model.state_dict().items():
        expected = torch.tensor(reference["weights"][name], dtype=value.dtype)
        if same_machine(reference["machine"]):  # bit for bit where the float kernels are the same
            assert torch.equal(value, expected), name
        else:  # another CPU's kernels round differently in the last bits
            torch.testing.assert_close(value, expected, rtol=1e-4, atol=1e-5)


def test_seeded_block_draws_as_after_set_seed_and_restores_on_error(caller_state):
    set_seed(9)
    expected = (random.random(), float(np.random.rand()), torch.rand(3))
    assert torch.are_deterministic_algorithms_enabled() and torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(False)
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = False, True
    torch.manual_seed(13)
    before = _process_state()
    with pytest.raises(RuntimeError, match="inside"), seeded(9):
        assert (random.random(), float(np.random.rand())) == expected[:2]
        assert torch.equal(torch.rand(3), expected[2])
        assert torch.are_deterministic_algorithms_enabled() and torch.backends.cudnn.deterministic
        assert not torch.backends.cudnn.benchmark
        raise RuntimeError("inside")
    assert _process_state() == before
    with seeded(9, deterministic=False):
        assert not torch.are_deterministic_algorithms_enabled() and torch.backends.cudnn.benchmark
        assert torch.equal(torch.rand(3), expected[2])
    assert _process_state() == before


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_seeded_restores_cuda_rng_states(caller_state):
    torch.cuda.init()
    torch.cuda.manual_seed_all(21)
    before = torch.cuda.get_rng_state_all()
    with seeded(9):
        inside = torch.rand(3, device="cuda")
    assert all(torch.equal(a, b) for a, b in zip(torch.cuda.get_rng_state_all(), before, strict=True))
    torch.cuda.manual_seed_all(9)
    assert torch.equal(torch.rand(3, device="cuda"), inside)  # the block drew from the seeded CUDA stream


def test_hooks_loss_fn_step_callback_and_max_steps():
    steps: list[tuple[int, int]] = []
    calls = {"loss": 0}

    def l2_to_zero(model, inputs, labels, logits):
        calls["loss"] += 1
        assert logits.shape == (len(labels), 4) and inputs.shape[0] == len(labels)
        return 1.0 * sum((p**2).sum() for p in model.parameters())

    model, result = run(epochs=2, loss_fn=l2_to_zero, step_callback=lambda s, t: steps.append((s, t)))
    assert steps == [(s, 32) for s in range(32)]
    assert calls["loss"] == 32
    assert "extra_loss" in result["history"][0]
    plain_model, _ = run(epochs=2)
    norm = sum(float((p.detach() ** 2).sum()) for p in model.parameters())
    plain_norm = sum(float((p.detach() ** 2).sum()) for p in plain_model.parameters())
    assert norm < 0.5 * plain_norm  # the extra term really entered the gradient

    set_seed(0)
    capped = train_classifier(
        mlp(),
        make_loader(blobs(512), stack_collate, 32, shuffle=True),
        TrainConfig(epochs=5, lr=1e-2, batch_size=32, max_steps=20),
    )
    assert capped["steps"] == 20 and capped["epochs"] == 2


def test_on_epoch_end_can_stop_and_augment_is_applied():
    seen_epochs: list[int] = []
    augmented = {"n": 0}

    def aug(x):
        augmented["n"] += 1
        return x + 0.01 * torch.randn_like(x)

    _, result = run(epochs=4, on_epoch_end=lambda e, rec: seen_epochs.append(e) or e == 1, augment=aug)
    assert seen_epochs == [0, 1]
    assert result["stopped_early"] and result["epochs"] == 2
    assert augmented["n"] == 32
    assert "eval_accuracy" in result["history"][0]


def test_thread_limit_restores():
    before = torch.get_num_threads()
    with thread_limit(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with pytest.raises(ValueError, match="num_threads"):
        with thread_limit(0):
            pass


def sentences(n: int = 2000, seed: int = 0) -> list[tuple[str, int]]:
    rng = random.Random(seed)
    return [(" ".join("w" for _ in range(rng.randint(1, 60))), i % 2) for i in range(n)]


def spread(batches: list[list[int]], lengths: list[int]) -> float:
    return sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches) / len(batches)


def test_length_bucketing_groups_lengths_and_covers_all():
    data = sentences()
    lengths = [text_length(item) for item in data]
    bucketed = SeededBatchSampler(len(data), 32, shuffle=True, seed=7, lengths=lengths)
    plain = SeededBatchSampler(len(data), 32, shuffle=True, seed=7)
    for epoch in range(2):
        b = bucketed.batches(epoch)
        flat = sorted(i for batch in b for i in batch)
        assert flat == list(range(len(data)))  # every example exactly once
        assert len(b) == len(bucketed) == math.ceil(2000 / 32)
        assert spread(b, lengths) < 0.25 * spread(plain.batches(epoch), lengths)
    assert bucketed.batches(0) == SeededBatchSampler(
        len(data), 32, shuffle=True, seed=7, lengths=lengths
    ).batches(0)
    assert bucketed.batches(0) != bucketed.batches(1)  # reshuffled per epoch
    assert bucketed.batches(0) != SeededBatchSampler(
        len(data), 32, shuffle=True, seed=8, lengths=lengths
    ).batches(0)
    # batch order is shuffled, not sorted by length
    firsts = [lengths[b[0]] for b in bucketed.batches(0)]
    assert firsts != sorted(firsts)


def test_make_loader_bucketing_through_dataloader():
    data = sentences(500)
    loader = make_loader(
        data,
        lambda items: ([t for t, _ in items], torch.tensor([y for _, y in items])),
        16,
        shuffle=True,
        seed=1,
        length_bucketing=True,
    )
    seen = []
    for texts, labels in loader:
        assert len(texts) == len(labels) <= 16
        seen.extend(texts)
    assert sorted(seen) == sorted(t for t, _ in data)
    again = [
        texts
        for texts, _ in make_loader(
            data, lambda items: ([t for t, _ in items], None), 16, shuffle=True, seed=1, length_bucketing=True
        )
    ]
    first = [
        texts
        for texts, _ in make_loader(
            data, lambda items: ([t for t, _ in items], None), 16, shuffle=True, seed=1, length_bucketing=True
        )
    ]
    assert again == first
    eval_loader = make_loader(
        data, lambda items: [len(t.split()) for t, _ in items], 16, shuffle=False, length_bucketing=True
    )
    flat = [n for batch in eval_loader for n in batch]
    assert flat == sorted(flat)  # eval bucketing sorts by length


def test_text_length_pairs():
    assert text_length(("a b c", 1)) == 3
    assert text_length((("a b", "c d e"), 0)) == 5
    with pytest.raises(TypeError, match="length_fn"):
        text_length((torch.zeros(3), 1))


def test_dict_inputs_use_forward_logits():
    class DictModel(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(8, 4)

        def forward(self, features, mask):
            return self.lin(features * mask)

    def collate(items):
        x, y = stack_collate(items)
        return {"features": x, "mask": torch.ones_like(x)}, y

    set_seed(0)
    model = DictModel()
    result = train_classifier(
        model,
        make_loader(blobs(512, seed=1), collate, 32, shuffle=True),
        TrainConfig(epochs=3, lr=3e-2),
        eval_loader=make_loader(blobs(256, seed=2), collate, 64, shuffle=False),
    )
    assert result["eval_accuracy"] > 0.95


def test_random_affine_identity_and_horizontal_flip():
    images = torch.rand(64, 1, 28, 28)
    identity = RandomAffine(degrees=0.0, translate=0.0, scale=(1.0, 1.0))
    torch.testing.assert_close(identity(images), images, rtol=0, atol=1e-5)  # bilinear at the pixel centres
    flipped = RandomAffine(degrees=0.0, translate=0.0, scale=(1.0, 1.0), hflip=True)(images)
    same = [torch.allclose(o, i, atol=1e-5) for o, i in zip(flipped, images, strict=True)]
    mirrored = [torch.allclose(o, i.flip(-1), atol=1e-5) for o, i in zip(flipped, images, strict=True)]
    assert all(a or b for a, b in zip(same, mirrored, strict=True)) and 10 < sum(mirrored) < 54


def test_random_affine_without_flip_draws_as_before():
    """hflip=False draws angle, zoom and shift only: augmented models trained before it existed are unchanged."""
    torch.manual_seed(0)
    RandomAffine()(torch.rand(8, 1, 28, 28))
    after_call = torch.get_rng_state()
    torch.manual_seed(0)
    torch.rand(8, 1, 28, 28), torch.rand(8), torch.rand(8), torch.rand(8, 2)
    assert torch.equal(after_call, torch.get_rng_state())
    with pytest.raises(ValueError, match="translate"):
        RandomAffine(translate=1.5)


if __name__ == "__main__":
    REFERENCE_WEIGHTS.parent.mkdir(exist_ok=True)
    weights = {k: v.tolist() for k, v in _reference_train(*_reference_setup()).state_dict().items()}
    REFERENCE_WEIGHTS.write_text(json.dumps({"machine": machine_fingerprint(), "weights": weights}) + "\n")
    print(f"wrote {REFERENCE_WEIGHTS}")
