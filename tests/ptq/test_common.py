"""The shared PTQ machinery: activation capture without padding, LayerNorm -> Linear groups."""

import pytest
import torch
from torch import nn

from arnq.batch import forward_logits
from arnq.ptq.common import block_linears, collect, materialize, norm_groups
from arnq.quant import detect_family
from tests.conftest import text_batch, tiny_bert, tiny_swin, tiny_vit


def test_collect_drops_padding_and_matches_a_manual_hook():
    model = tiny_bert()
    batch = text_batch(n=4, length=12, pad_first=5)
    name = "bert.encoder.layer.0.intermediate.dense"
    seen = []
    handle = model.get_submodule(name).register_forward_hook(lambda m, args, out: seen.append(args[0]))
    with torch.no_grad():
        forward_logits(model, batch)
    handle.remove()
    rows = collect(model, [name], materialize([(batch, torch.zeros(4))]))[name]
    assert rows.shape == (4 * 12 - 5, 64)
    torch.testing.assert_close(rows, seen[0][batch["attention_mask"].bool()])


@pytest.mark.parametrize("build, n_groups, foldable", [(tiny_vit, 4, True), (tiny_swin, 9, True), (tiny_bert, 4, False)])
def test_norm_groups_read_the_norm_output(build, n_groups, foldable):
    """Every group's Linears read the LayerNorm's output (Swin: the same rows, windowed and shifted)."""
    model = build()
    family = detect_family(model)
    groups = norm_groups(model, family)
    assert len(groups) == n_groups and all(g.foldable is foldable for g in groups)
    inputs = text_batch() if family == "bert" else torch.randn(2, 3, 32, 32)
    batches = materialize([(inputs, torch.zeros(2))])
    outputs = collect(model, [g.norm for g in groups], batches, what="output")
    ins = collect(model, [name for g in groups for name in g.linears], batches)
    for g in groups:
        assert isinstance(model.get_submodule(g.norm), nn.LayerNorm)
        for name in g.linears:
            torch.testing.assert_close(ins[name].sort(dim=0).values, outputs[g.norm].sort(dim=0).values)


def test_block_linears_leave_out_the_edges():
    names = [n for n, _ in block_linears(tiny_swin(), "swin")]
    assert "head.fc" not in names and "layers.1.downsample.reduction" in names and len(names) == 17


def test_materialize_refuses_empty_calibration():
    with pytest.raises(ValueError, match="at least one"):
        materialize([])
