"""The arnq command line: listings, and bad input rejected before any work with the fix named."""

import re

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
        (["quantize", "--ptq", "ema", "--param", "ema.sigmaa=0.1"], "valid: "),
        (["quantize", "--ptq", "ema", "--param", "ema=0.1"], "METHOD.NAME=VALUE"),
        (["quantize", "--ptq", "minmax", "--param", "ema.sigma=0.1"], "add it to --ptq"),
    ],
)
def test_bad_input_is_rejected_before_any_work(capsys, monkeypatch, argv, message):
    import harness.quantize

    def never(*args, **kwargs):
        raise AssertionError("work started despite bad input")

    monkeypatch.setattr(harness.quantize, "load_model", never)
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_ls_spaces_shows_every_space_path_whole(capsys):
    from harness.cli import spaces_dir

    assert main(["ls", "spaces"]) == 0
    out = capsys.readouterr().out
    missing = [p.name for p in sorted(spaces_dir().glob("*.yaml")) if f"search_spaces/{p.name}" not in out]
    assert not missing, missing


def test_ls_schedules_plots(tmp_path, capsys):
    out = tmp_path / "schedules.png"
    assert main(["ls", "schedules", "--plot", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_validate_prints_counts_and_cost(capsys):
    assert main(["validate", "search_spaces/quickstart.yaml"]) == 0
    out = capsys.readouterr().out
    assert "valid space 'quickstart'" in out and "trials (PTQ evaluations): 12" in out
    assert "distinct fine-tunes: 12" in out and "cost estimate: ~" in out


@pytest.mark.parametrize("arg", ["search_spaces/quickstart.yaml", "quickstart.yaml", "quickstart"])
def test_validate_finds_a_shipped_space_by_name_from_any_directory(tmp_path, capsys, monkeypatch, arg):
    monkeypatch.chdir(tmp_path)  # no search_spaces/ here: the shipped copy is used
    assert main(["validate", arg]) == 0
    assert "valid space 'quickstart'" in capsys.readouterr().out


def test_a_file_wins_over_the_shipped_space_of_its_name(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "quickstart.yaml").write_text("name: mine\nmodels: [vit_mnist]\nbits: [W4A4]\nptq: [minmax]\n")
    assert main(["validate", "quickstart.yaml"]) == 0
    assert "valid space 'mine'" in capsys.readouterr().out


@pytest.mark.parametrize("arg", ["quickstrt", "search_spaces/quickstrt.yaml", "elsewhere/quickstart.yaml"])
def test_an_unknown_space_lists_the_shipped_ones(tmp_path, capsys, monkeypatch, arg):
    import harness.sweep

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(harness.sweep, "run_sweep", lambda *a, **k: (_ for _ in ()).throw(AssertionError("ran")))
    for command in ("validate", "sweep"):
        assert main([command, arg]) == 2
        err = capsys.readouterr().err
        assert f"{arg}: no such file and no shipped space of that name. Did you mean 'quickstart'?" in err
        assert "Shipped spaces: arms_first_fmnist, arms_first_minilm, arms_first_minilm_percentile, arms_first_tweets, arms_first_vit," in err


@pytest.mark.parametrize(
    "text, message",
    [
        ("name: x\nmodels: [vit_mnst]\nbits: [W4A4]\nptq: [minmax]\n", "models[0]: Unknown model 'vit_mnst'"),
        ("name: x\nmodels: [vit_mnist]\nbits: [W4A4]\nptq: [minmax]\nfinetune: {lr: -1}\n", "lr"),
        ("name: x\nmodels: [vit_mnist\nbits: [W4A4]\n", "YAML syntax error at line"),
    ],
)
def test_validate_and_sweep_reject_bad_spaces_before_ray_starts(tmp_path, capsys, monkeypatch, text, message):
    import harness.sweep

    monkeypatch.setattr(harness.sweep, "run_sweep", lambda *a, **k: (_ for _ in ()).throw(AssertionError("ran")))
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    for command in ("validate", "sweep"):
        assert main([command, str(path)]) == 2
        assert message in capsys.readouterr().err


def _golden_run(tmp_path):
    """A run directory holding the golden rows and space."""
    import shutil
    from pathlib import Path

    golden = Path(__file__).parent / "golden"
    run = tmp_path / "run"
    run.mkdir()
    for name in ("rows.jsonl", "space.json"):
        shutil.copy(golden / name, run / name)
    return run


def test_report_command_writes_the_leaderboards(tmp_path, capsys):
    run = _golden_run(tmp_path)
    assert main(["report", str(run), "--format", "md,csv"]) == 0
    assert (run / "report" / "report.md").read_text().startswith("# golden")
    assert (run / "report" / "leaderboard.csv").is_file() and not (run / "report" / "report.html").exists()
    assert main(["report", str(run), "--format", "pdf"]) == 2
    assert "unknown; choose from" in capsys.readouterr().err


def test_the_end_of_a_run_says_where_its_offline_wandb_runs_are_and_how_to_upload_them(tmp_path, capsys):
    import time

    from harness.cli import _finish_run
    from harness.store import read_rows

    run = _golden_run(tmp_path)
    for i in range(3):
        (run / "wandb" / "wandb" / f"offline-run-2026120{i}_000000-abc{i}").mkdir(parents=True)
    _finish_run(read_rows(run / "rows.jsonl"), run, "golden", time.perf_counter())
    out = " ".join(capsys.readouterr().out.split())  # rich wraps long lines
    assert "W&B: 3 offline runs in" in out and "wandb sync" in out and "offline-run-*" in out


def test_a_run_ends_with_its_report_and_nothing_beside_it(tmp_path, capsys):
    import time

    from harness.cli import _finish_run
    from harness.store import read_rows

    run = _golden_run(tmp_path)
    assert _finish_run(read_rows(run / "rows.jsonl"), run, "golden", time.perf_counter()) == 1  # a failed trial
    assert sorted(p.name for p in run.iterdir()) == ["report", "rows.jsonl", "space.json"]
    assert {"report.md", "report.html", "leaderboard.csv", "trials.csv"} <= {p.name for p in (run / "report").iterdir()}
    out = " ".join(capsys.readouterr().out.split())
    assert "golden: leaderboard" in out
    assert "failed: vit_mnist W4A4 percentile plain seed 1: FloatingPointError: loss is nan at step 3" in out
    assert ("minilm_rt W4A4: arnq + minmax 71.00 ± 1.41 against percentile after plain fine-tuning 66.00 ± 1.41; "
            "paired Δ +5.00 ± 0.00 over 2 seeds (two-sided paired t-test p = 0.000): better (p < 0.05)") in out
    assert re.search(r"47 trials: 45 ok, 1 stopped early by ASHA, 1 failed in \d+ s$", out)


@pytest.mark.parametrize("seconds, text", [(0.4, "0 s"), (42, "42 s"), (1450, "24 min 10 s"), (7500, "2 h 05 min")])
def test_durations_read_as_a_person_writes_them(seconds, text):
    from harness.cli import duration_text

    assert duration_text(seconds) == text


def test_a_sweep_whose_ray_experiment_ends_early_fails_and_says_how_to_resume(tmp_path, capsys, monkeypatch):
    """Trials that never got a row (Ray lost mid-run, whatever Tune then returns) make the sweep fail."""
    import harness.sweep
    from harness.grid import ended_row
    from harness.store import ROWS, append_row, read_rows

    def one_trial_then_ray_ends(space, run_dir, **kwargs):
        harness.sweep.prepare_run_dir(space, run_dir, False)
        append_row(run_dir / ROWS, ended_row(space.trials()[0], "ok", fp_acc=60.0, ft_acc=55.0, q_acc=50.0))
        return read_rows(run_dir / ROWS)

    space, run = tmp_path / "three.yaml", tmp_path / "run"
    space.write_text("name: three\nmodels: [vit_mnist]\nbits: [W4A4]\nptq: [minmax]\nseeds: [0, 1, 2]\n")
    monkeypatch.setattr(harness.sweep, "run_sweep", one_trial_then_ray_ends)
    assert main(["sweep", str(space), "--out", str(run)]) == 1
    out = " ".join(capsys.readouterr().out.split())
    assert "3 trials: 1 ok, 0 stopped early by ASHA, 0 failed, 2 not run in" in out
    assert (f"error: 2 of 3 trials never ran (the Ray experiment ended without them); resume with: arnq sweep {space} "
            f"--out {run} --resume") in out


def test_the_summary_line_counts_every_state_and_what_never_ran():
    from harness.cli import summary_line

    rows = [{"status": "ok"}] * 3 + [{"status": "stopped"}, {"status": "failed"}]
    assert summary_line(rows, 61, total=7) == "7 trials: 3 ok, 1 stopped early by ASHA, 1 failed, 2 not run in 1 min 01 s"


def test_quantize_command_writes_a_results_store_and_its_report(tmp_path, capsys, monkeypatch):
    import harness.quantize
    from tests.test_finetune import _loaded

    loaded = _loaded()
    monkeypatch.setattr(harness.quantize, "load_model", lambda *args, **kwargs: loaded)
    run = tmp_path / "quantize"
    argv = ["quantize", "--model", "vit_mnist", "--ptq", "minmax", "--bits", "W4A4", "--calib-size", "32",
            "--out", str(run)]
    assert main(argv) == 0
    assert sorted(p.name for p in run.iterdir()) == ["job.json", "report", "rows.jsonl"]
    assert (run / "report" / "report.md").read_text(encoding="utf-8").startswith("# quantize: leaderboard report")
    out = " ".join(capsys.readouterr().out.split())
    assert "quantize: leaderboard" in out and "1 trials" in out


@pytest.mark.parametrize("command", ["sweep", "validate"])
def test_a_space_command_without_a_space_names_the_shipped_ones(capsys, command):
    assert main([command]) == 2
    err = capsys.readouterr().err
    assert "give a search space" in err and "quickstart" in err and "arms_first_vit" in err


@pytest.mark.parametrize("argv", [[], ["quantize"], ["sweep"], ["validate"], ["report"], ["ls"],
                                  ["reproduce"]])
def test_every_help_fits_a_screen_and_shows_an_example(capsys, argv):
    with pytest.raises(SystemExit) as stop:
        main([*argv, "--help"])
    assert stop.value.code == 0
    out = capsys.readouterr().out
    assert "examples:" in out and "arnq " in out.split("examples:")[1]
    assert len(out.splitlines()) <= 50


@pytest.mark.parametrize("argv, hint", [(["swep"], "Did you mean 'sweep'?"), (["ls", "spacs"], "Did you mean 'spaces'?")])
def test_a_mistyped_command_or_choice_suggests_the_closest(capsys, argv, hint):
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2 and hint in capsys.readouterr().err
