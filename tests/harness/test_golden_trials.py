"""The trial pipeline under every arm reproduces its stored rows and fine-tuned weights.

Exactly on the machine that wrote the reference; elsewhere (tests.golden_machine) within
float-kernel noise: accuracies within 2 of the 128 test examples, weight checksums within 1e-5.
"""

import json

import pytest

from tests.golden_machine import same_machine
from tests.harness.golden_trials import GOLDEN, compute_cases


def test_rows_and_weights_match_the_reference(tmp_path):
    got = compute_cases(tmp_path)
    reference = json.loads(GOLDEN.read_text())
    cases = reference["cases"]
    assert sorted(got) == sorted(cases)
    if same_machine(reference["machine"]):
        assert got == cases, {k: (got[k], cases[k]) for k in got if got[k] != cases[k]}
        return
    for key, ref in cases.items():
        for field in ("ft_acc", "q_acc"):
            assert got[key][field] == pytest.approx(ref[field], abs=2 * 100 / 128 + 1e-9), (key, field)
        assert got[key]["weights_checksum"] == pytest.approx(ref["weights_checksum"], rel=1e-5), key
