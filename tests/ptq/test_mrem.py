"""MREM: module split, teacher forcing, learned steps, reconstruction beats min-max, parallel processes."""

import copy

import pytest
import torch
from torch import nn

from arnq.batch import forward_logits
from arnq.ptq import MinMaxConfig, quantize_
from arnq.ptq.mrem import LearnedSteps, ModuleData, MREMConfig, run_parallel, split_modules, teacher_weight
from arnq.quant import sqnr_db
from arnq.quant.quantizer import FakeQuantizer, QuantSpec
from tests.conftest import image_batch, text_batch, tiny_bert, tiny_vit


def test_modules_are_contiguous_near_equal_cuts():
    units = [f"layer.{i}" for i in range(12)]
    assert [len(m) for m in split_modules(units, 4)] == [3, 3, 3, 3]  # BERT-base, as in the paper
    six = split_modules(units[:6], 4)
    assert sum(six, []) == units[:6] and all(1 <= len(m) <= 2 for m in six)
    assert split_modules(units[:2], 4) == [["layer.0"], ["layer.1"]]


def test_teacher_forcing_decays_linearly_to_zero():
    assert [teacher_weight(t, 4) for t in (0, 1, 2, 4, 9)] == [1.0, 0.75, 0.5, 0.0, 0.0]
    assert teacher_weight(0, 0) == 0.0


def test_learned_steps_receive_gradients_and_are_kept():
    q = FakeQuantizer(QuantSpec(4), "linear_in")
    x = torch.linspace(-1, 1, 101)
    q.set_qparams(torch.tensor(0.02), torch.tensor(8.0))
    q.quantizing = True
    holder = nn.Module()
    holder.q = q
    steps = LearnedSteps(holder)
    loss = (q(x) - x).pow(2).mean()  # the range is far too narrow: the loss wants a larger step
    loss.backward()
    (gain,) = steps.gains
    assert float(gain.grad) < 0
    with torch.no_grad():
        gain += 0.5
    scales = steps.finish()
    assert float(q.scale) == pytest.approx(0.02 * torch.e ** 0.5, rel=1e-5)
    assert not q.scale.requires_grad and list(scales) == ["q"]


CASES = {"vit": (tiny_vit, image_batch), "bert": (tiny_bert, text_batch)}


@pytest.mark.parametrize("family", sorted(CASES))
def test_reconstruction_beats_min_max_at_w4a4(family):
    build, make_inputs = CASES[family]
    model = build()
    calib = [(make_inputs(seed=10 + i), torch.zeros(8)) for i in range(4)]
    x = make_inputs(seed=30)
    with torch.no_grad():
        reference = forward_logits(model, x)
    base = quantize_(copy.deepcopy(model), MinMaxConfig(w_bits=4, a_bits=4), calib)
    cfg = MREMConfig(w_bits=4, a_bits=4, iters=120, teacher_steps=40, n_modules=2, lr=1e-3, lr_step=1e-2)
    q = quantize_(copy.deepcopy(model), cfg, calib)
    first, last = zip(*q.arnq_mrem_losses, strict=True)
    assert all(b < 0.8 * a for a, b in zip(first, last, strict=True)), q.arnq_mrem_losses
    with torch.no_grad():
        assert sqnr_db(reference, forward_logits(q, x)) > sqnr_db(reference, forward_logits(base, x)) + 1.0


@pytest.mark.slow
def test_parallel_modules_train_in_their_own_processes():
    model = tiny_bert()
    calib = [(text_batch(seed=10 + i, pad_first=4), torch.zeros(8)) for i in range(4)]
    x = text_batch(seed=30)
    with torch.no_grad():
        reference = forward_logits(model, x)
    base = quantize_(copy.deepcopy(model), MinMaxConfig(w_bits=4, a_bits=4), calib)
    cfg = MREMConfig(w_bits=4, a_bits=4, iters=120, teacher_steps=60, n_modules=2, lr=1e-3, lr_step=1e-2,
                     parallel=True)
    q = quantize_(copy.deepcopy(model), cfg, calib)
    assert len(q.arnq_mrem_losses) == 2
    changed = q.bert.encoder.layer[1].output.dense.weight
    assert not torch.equal(changed, model.bert.encoder.layer[1].output.dense.weight)  # loaded back from the worker
    with torch.no_grad():
        assert sqnr_db(reference, forward_logits(q, x)) > sqnr_db(reference, forward_logits(base, x)) + 1.0


@pytest.mark.slow
def test_a_failing_worker_is_reported_with_its_traceback():
    units = nn.ModuleList([nn.Linear(4, 4)])
    good = ModuleData([torch.randn(2, 4)], [torch.randn(2, 4)], [((), {})], [None], q_in=[torch.randn(2, 4)])
    bad = ModuleData([torch.randn(2, 4)], [torch.randn(2, 5)], [((), {})], [None])  # target of the wrong width
    with pytest.raises(RuntimeError, match=r"MREM module 1 failed in its worker process:(.|\n)*size of tensor"):
        run_parallel([units, copy.deepcopy(units)], [good, bad], MREMConfig(iters=3, teacher_steps=1), "vit")


def test_cut_slices_every_per_example_tensor_alike():
    x = torch.arange(5 * 3 * 2.0).reshape(5, 3, 2)
    attn = torch.arange(5 * 9.0).reshape(5, 1, 3, 3)
    data = ModuleData([x], [x + 1], [((attn,), {"scale": torch.ones(2, 2), "flag": True})], [torch.ones(5, 3).bool()])
    cut = data.cut(2)
    assert [len(t) for t in cut.fp_in] == [2, 2, 1]
    for k, start in enumerate((0, 2, 4)):
        assert torch.equal(cut.fp_in[k], x[start:start + 2]) and torch.equal(cut.fp_out[k], x[start:start + 2] + 1)
        (mask_k,), kw = cut.tails[k]
        assert torch.equal(mask_k, attn[start:start + 2]) and kw["flag"] is True
        assert kw["scale"].shape == (2, 2)  # not batch-first: passed whole
        assert cut.masks[k].shape[0] == len(cut.fp_in[k])
