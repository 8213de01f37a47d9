"""The arnq command line: listings, and bad input rejected before any work with the fix named."""

import pytest

from harness.cli import main


@pytest.mark.parametrize(
    "what, expected",
    [("models", "minilm_rt"), ("datasets", "rotten_tomatoes"), ("ptq", "omse"), ("arms", "arnq_quanttune"),
     ("schedules", "cosine"), ("spaces", "arms_first_vit")],
)
def test_ls_lists_registries(capsys, what, expected):
    assert main(["ls", what]) == 0
    assert expected in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["quantize", "--model", "vit_mnst"], "Did you mean 'vit_mnist'?"),
        (["quantize", "--ptq", "minmx"], "Did you mean 'minmax'?"),
        (["quantize", "--bits", "W9A8"], "weight bits must be 2..8"),
        (["quantize", "--bits", "W4"], "W<weight bits>A<activation bits>"),
        (["quantize", "--bits", "W0A8"], "weight bits must be 2..8"),
        (["quantize", "--model", "vit_mnist", "minilm_rt", "--weights", "w.safetensors"], "single --model"),
    ],
)
def test_bad_input_is_rejected_before_any_work(capsys, monkeypatch, argv, message):
    import harness.quantize

    def never(*args, **kwargs):
        raise AssertionError("work started despite bad input")

    monkeypatch.setattr(harness.quantize, "load_model", never)
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_ls_schedules_plots(tmp_path, capsys):
    out = tmp_path / "schedules.png"
    assert main(["ls", "schedules", "--plot", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
