"""Quantized logits of every PTQ method on tiny ViT/Swin/BERT are bit-identical to the stored reference."""

import pytest
import torch
from safetensors.torch import load_file

from arnq.ptq import ptq_config, quantize_
from tests.ptq.golden_logits import GOLDEN, compute


@pytest.fixture(scope="module")
def logits():
    return compute(lambda model, method, bits, params, calib: quantize_(model, ptq_config(method, bits, **params), calib))


def test_every_case_matches_the_reference_bit_for_bit(logits):
    reference = load_file(str(GOLDEN))
    assert sorted(logits) == sorted(reference)
    differ = [k for k in reference if not torch.equal(logits[k], reference[k])]
    assert not differ, f"{len(differ)} of {len(reference)} cases changed, first: {differ[:5]}"
