"""Every PTQ method calibrates on text batches of different sequence lengths, as a tokenized
dataset's length-bucketed loader gives them, and AdaLog's softmax search scores the padded
batches exactly as the unpadded ones."""

import copy

import pytest
import torch

from arnq.batch import forward_logits
from arnq.ptq import PTQ_METHODS, ptq_config, quantize_
from arnq.ptq.adalog import _Softmax
from tests.conftest import text_batch, tiny_bert


@pytest.mark.parametrize("method", PTQ_METHODS.names())
def test_every_method_calibrates_on_batches_of_different_lengths(method):
    handler = PTQ_METHODS.get(method)
    if "bert" not in handler.families:
        pytest.skip(f"{method} does not support bert")
    bits = "W4A16" if handler.quantizes == "W" else "W4A4"
    calib = [(text_batch(n=4, seed=10, length=12, pad_first=3), torch.zeros(4)),
             (text_batch(n=4, seed=11, length=7), torch.zeros(4))]
    model = tiny_bert()
    with torch.no_grad():
        quantized = quantize_(copy.deepcopy(model), ptq_config(method, bits, **handler.smoke_params), calib)
        out = forward_logits(quantized, text_batch(n=4, seed=30, length=9))
    assert torch.isfinite(out).all()


def test_adalog_softmax_search_scores_padded_batches_as_the_unpadded_ones():
    gen = torch.Generator().manual_seed(0)

    def batch(n_tokens: int, real_rows: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        p = (torch.randn(2, 3, n_tokens, n_tokens, generator=gen) * 2).softmax(-1)
        v = torch.randn(2, 3, n_tokens, 4, generator=gen)
        w = torch.zeros(2, 1, n_tokens, 1)
        w[:, :, :real_rows] = 1
        return p, v, w

    batches = [batch(5, 5), batch(8, 6), batch(3, 2)]
    merged = _Softmax(None, "", None, *([list(t) for t in zip(*batches, strict=True)]))
    q, errors = merged.errors(4, 8, None, torch.Generator())
    per_batch = sum(_Softmax(None, "", None, [p], [v], [w]).errors(4, 8, None, torch.Generator())[1]
                    for p, v, w in batches)
    torch.testing.assert_close(errors, per_batch, rtol=1e-5, atol=1e-6)
    assert merged.search(4, 8, None, torch.Generator()) == float(q[per_batch.argmin()])
