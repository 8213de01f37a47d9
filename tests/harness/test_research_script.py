"""scripts/arnq_research.py pairs every arm with plain by (model, bits, PTQ, seed) and tabulates it."""

import importlib.util
import json
import statistics
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "arnq_research.py"


@pytest.fixture(scope="module")
def research():
    spec = importlib.util.spec_from_file_location("arnq_research", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _row(arm, seed, q, ft, params=None, status="ok", ptq="minmax"):
    return {"model": "minilm_rt", "bits": "W4A4", "ptq": ptq, "seed": seed, "arm": arm,
            "arm_params": json.dumps(params or {}), "q_acc": q, "ft_acc": ft, "status": status}


def test_pairs_by_seed_and_reports_fp_cost(research):
    rows = [_row("plain", 0, 66.0, 82.0), _row("plain", 1, 64.0, 83.0),
            _row("arnq", 0, 72.0, 80.0, {"dist": "bernoulli"}), _row("arnq", 1, 71.0, 80.0, {"dist": "bernoulli"}),
            _row("arnq", 2, 90.0, 80.0, {"dist": "bernoulli"}),  # no plain for seed 2: left out, not paired wrongly
            _row("quanttune", 0, None, None, {"lam": 1.0}, status="stopped")]
    cells = research.paired(rows)
    arm = cells[("minilm_rt", "W4A4", "minmax")]["arnq(dist=bernoulli)"]
    assert arm["improvement"] == [6.0, 7.0]
    assert arm["ft_cost"] == [-2.0, -3.0]
    text = research.markdown(cells, research.stopped(rows))
    assert f"+6.50 ± {statistics.stdev([6.0, 7.0]):.2f} (n=2)" in text
    assert "-2.50 ± 0.71 (n=2)" in text
    assert "quanttune(lam=1.0) seed 0 (stopped)" in text


def test_linear_kind_names_the_layer_and_skips_duplicates(research):
    assert research.linear_kind("linear_in/bert.encoder.layer.3.intermediate.dense") == ("fc1_in", 3)
    assert research.linear_kind("linear_in/bert.encoder.layer.3.output.dense") == ("fc2_in", 3)
    assert research.linear_kind("linear_in/bert.encoder.layer.3.attention.output.dense") == ("attn_out_in", 3)
    assert research.linear_kind("linear_in/bert.encoder.layer.3.attention.self.key") is None
    assert research.linear_kind("linear_in/blocks.1.mlp.fc2") == ("fc2_in", 1)
    assert research.linear_kind("linear_in/classifier") is None


def test_sensitivity_groups_partition_the_bert_linears(research):
    from arnq.quant.api import name_matches

    names = [f"bert.encoder.layer.{i}.{m}" for i in (0, 11) for m in
             ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense",
              "intermediate.dense", "output.dense")]
    owners = {n: [k for k, pats in research.BERT_GROUPS.items() if name_matches(n, pats)] for n in names}
    assert all(len(kinds) == 1 for kinds in owners.values()), owners
    assert owners["bert.encoder.layer.11.output.dense"] == ["fc2_in"]
    assert owners["bert.encoder.layer.0.attention.output.dense"] == ["attn_out_in"]
