"""`arnq reproduce`: reading a result folder, narrowing it, the stated tolerance, the comparison and the
command's verdict (the real re-run of a committed sweep is in the slow tier)."""

import json
from pathlib import Path

import pytest

from harness import reproduce as rp
from harness.cli import main
from harness.pipeline import cell_fields
from harness.space import SpaceError, parse_space, space_from_record
from harness.store import cpu_identity, provenance

SPACE = {"name": "tiny", "models": ["vit_mnist"], "bits": ["W4A4", "W8A8"], "ptq": ["minmax", "repq_vit"],
         "arms": ["plain", {"name": "arnq", "delta_observer": ["minmax", None], "label": "arnq-x"}],
         "seeds": [0, 1], "finetune": {"epochs": 1, "train_subset": 64, "val_size": 32}}


def _result(tmp_path: Path, *, code: str | None = None, versions: str | None = None, cpu: str | None = None,
            q: float = 50.0) -> Path:
    """A sweep result folder whose rows carry this checkout's code, versions and CPU unless told otherwise."""
    space = parse_space(SPACE)
    folder = tmp_path / "result"
    folder.mkdir(parents=True)
    (folder / "space.json").write_text(json.dumps(space.to_dict()))
    meta = provenance()
    rows = [{**cell_fields(t), "trial_id": f"t{i}", "status": "ok", "fp_acc": 90.0, "ft_acc": 89.0,
             "q_acc": q + i, "code": code or rp.current_code("sweep"), "versions": versions or meta["versions"],
             "cpu": cpu or cpu_identity(), "git_commit": "abc", "git_dirty": False} for i, t in enumerate(space.trials())]
    (folder / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def test_a_space_record_reads_back_as_the_same_space_labels_included():
    space = parse_space(SPACE)
    again = space_from_record(json.loads(json.dumps(space.to_dict())))
    assert [t.to_dict() for t in again.trials()] == [t.to_dict() for t in space.trials()]
    assert again.labels == space.labels and again.source_hash == space.source_hash


def test_folders_that_cannot_be_regenerated_say_why(tmp_path):
    with pytest.raises(rp.ReproduceError, match="no such folder"):
        rp.load_result(tmp_path / "nope")
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "results.csv").write_text("model\n")
    with pytest.raises(rp.ReproduceError, match="predates the results store"):
        rp.load_result(tmp_path / "old")
    (tmp_path / "bare").mkdir()
    (tmp_path / "bare" / "rows.jsonl").write_text(json.dumps({"trial_id": "a", "status": "ok"}) + "\n")
    with pytest.raises(rp.ReproduceError, match="neither space.json nor job.json"):
        rp.load_result(tmp_path / "bare")


def test_cells_and_seeds_narrow_the_space_and_the_rows(tmp_path):
    result = rp.load_result(_result(tmp_path))
    assert result.kind == "sweep" and len(result.rows) == 2 * 2 * 3 * 2
    part = rp.select(result, cells=["W4A4", "repq_vit"], seeds=[1])
    assert part.spec.bits == ("W4A4",) and [m for m, _ in part.spec.ptq] == ["repq_vit"] and part.spec.seeds == (1,)
    assert len(part.rows) == 3 and {(r["bits"], r["ptq"], r["seed"]) for r in part.rows} == {("W4A4", "repq_vit", 1)}
    both = rp.select(result, cells=["minmax", "repq_vit", "arnq-x"])  # same kind: either; the label names its arm
    assert len(both.rows) == 2 * 2 * 2 * 2 + 2 * 2 * 2  # plain is always in a space's grid
    with pytest.raises(rp.ReproduceError, match=r"--cells 'W3A3' names nothing.*bits: W4A4, W8A8"):
        rp.select(result, cells=["W3A3"])
    with pytest.raises(rp.ReproduceError, match=r"Did you mean 'repq_vit'\?"):
        rp.select(result, cells=["repqvit"])
    with pytest.raises(rp.ReproduceError, match=r"--seeds \[7\]:.*ran seeds \[0, 1\]"):
        rp.select(result, seeds=[7])


def test_the_tolerance_is_exact_only_for_the_same_code_versions_and_cpu(tmp_path):
    same = rp.load_result(_result(tmp_path / "a"))
    assert rp.tolerance(same) == (0.0, "exact: same code fingerprint, library versions and CPU as the committed "
                                       "rows, on the CPU")
    other = rp.load_result(_result(tmp_path / "b", code="0123456789abcdef", versions='{"torch": "1.0"}'))
    tol, why = rp.tolerance(other)
    assert tol == rp.DEFAULT_TOLERANCE and "0123456789abcdef" in why and "library versions differ" in why
    assert "CPU" not in why
    assert rp.tolerance(other, 0.25) == (0.25, "±0.25 points, given with --tolerance")
    elsewhere = rp.load_result(_result(tmp_path / "c", cpu="AuthenticAMD family 25 model 1 (EPYC), torch AVX2"))
    tol, why = rp.tolerance(elsewhere)
    assert tol == rp.DEFAULT_TOLERANCE and "the CPU differs or was not recorded (committed AuthenticAMD" in why
    assert f"now {cpu_identity()}" in why and "code" not in why


def test_the_cpu_identity_names_the_model_and_the_kernels_torch_uses():
    import torch

    text = cpu_identity()
    assert f"torch {torch.backends.cpu.get_cpu_capability()}" in text and text == cpu_identity()
    if Path("/proc/cpuinfo").is_file():
        assert " family " in text and " model " in text


def test_cell_means_compare_each_cell_over_the_seeds_both_runs_finished():
    base = {"model": "m", "bits": "W4A4", "ptq": "minmax", "ptq_params": "{}", "arm_params": "{}", "status": "ok"}
    committed = [{**base, "arm": "plain", "seed": s, "q_acc": q} for s, q in enumerate((50.0, 52.0, 54.0))]
    committed += [{**base, "arm": "arnq", "seed": 0, "q_acc": 60.0}, {**base, "arm": "arnq", "seed": 1, "q_acc": 61.0,
                                                                        "status": "stopped"}]
    new = [{**r, "q_acc": r["q_acc"] + 1.0} for r in committed if r["seed"] != 2]
    new += [{**base, "arm": "plain", "seed": 2, "q_acc": None, "status": "failed"}]
    lines = {line["arm"]: line for line in rp.cell_means(committed, new)}
    assert lines["plain"] == {"model": "m", "bits": "W4A4", "ptq": "minmax", "arm": "plain", "metric": "q_acc",
                              "seeds": 2, "committed": "51.00 ± 1.41", "new": "52.00 ± 1.41", "diff": 1.0}
    assert lines["arnq"]["seeds"] == 1 and lines["arnq"]["committed"] == "60.00" and lines["arnq"]["diff"] == 1.0


def test_compare_pairs_cells_flags_differences_and_lists_what_it_cannot_compare():
    base = {"model": "m", "bits": "W4A4", "ptq": "minmax", "ptq_params": "{}", "arm": "plain", "arm_params": "{}",
            "fp_acc": 90.0, "ft_acc": 89.0, "status": "ok"}
    committed = [{**base, "seed": 0, "q_acc": 50.0}, {**base, "seed": 1, "q_acc": 51.0},
                 {**base, "seed": 2, "q_acc": 52.0, "status": "stopped"}, {**base, "seed": 3, "q_acc": 53.0}]
    new = [{**base, "seed": 0, "q_acc": 50.0}, {**base, "seed": 1, "q_acc": 51.5, "ptq_params": {}},
           {**base, "seed": 2, "q_acc": 52.0}]
    lines = rp.compare(committed, new, tol=0.0)
    q = {line["seed"]: line for line in lines if line["metric"] == "q_acc"}
    assert q[0]["within"] and q[0]["diff"] == 0.0
    assert not q[1]["within"] and q[1]["diff"] == 0.5
    notes = {line["seed"]: line for line in lines if not line["metric"]}
    assert notes[2]["within"] and "stopped in the committed run" in notes[2]["note"]
    assert not notes[3]["within"] and notes[3]["note"] == "no new row"
    assert rp.summary(lines, "exact").startswith("NOT reproduced: 5 of 6 values within tolerance (largest difference "
                                                 "0.50 points); tolerance exact; 1 cell(s) missing or failed")
    assert all(line["within"] for line in rp.compare(committed[:1], new, tol=0.0))


@pytest.mark.parametrize("shift, code", [(0.0, 0), (0.01, 1)])
def test_the_command_prints_each_value_and_fails_beyond_the_tolerance(tmp_path, monkeypatch, capsys, shift, code):
    folder = _result(tmp_path)
    committed = rp.load_result(folder).rows

    def rerun(result, out, cache=None, space=None):  # the new run: the committed numbers, shifted
        assert cache is None and not list(out.glob("*"))
        out.mkdir(parents=True, exist_ok=True)
        return [{**r, "q_acc": r["q_acc"] + shift} for r in result.rows]

    monkeypatch.setattr(rp, "run", rerun)
    out = tmp_path / "out"
    assert main(["reproduce", str(folder), "--cells", "W8A8", "minmax", "--seeds", "0", "--out", str(out)]) == code
    text = " ".join(capsys.readouterr().out.split())
    assert "sweep 'tiny', 3 committed rows to reproduce; tolerance exact" in text
    verdict = "reproduced: 9 of 9 values" if not shift else "NOT reproduced: 6 of 9 values"
    assert verdict in text and (out / "reproduce.csv").is_file()
    assert len(committed) == 24


def test_rows_whose_changed_settings_no_arm_setting_recreates_are_refused_before_any_work(tmp_path, monkeypatch,
                                                                                           capsys):
    folder = _result(tmp_path)
    specs = {f"t{i}": t for i, t in enumerate(parse_space(SPACE).trials())}
    rows = [json.loads(line) for line in (folder / "rows.jsonl").read_text().splitlines()]
    for row in rows:
        row["config"] = json.dumps(specs[row["trial_id"]].resolved())
    aware = [r for r in rows if r["ptq"] == "repq_vit" and json.loads(r["config"]).get("arm_target", {}).get("ptq")]
    assert aware and all(json.loads(r["config"])["arm_target"]["weight_error"] == "requantized" for r in aware)
    assert all("arm_target" not in json.loads(r["config"]) for r in rows if r["arm"] == "plain")
    config = json.loads(aware[0]["config"])
    config["arm_target"]["weight_error"] = "frozen"  # trained when the handler's default was another
    aware[0]["config"] = json.dumps(config)
    del rows[0]["config"]  # a row from before configs were recorded
    (folder / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))

    changes = rp.changed_settings(rp.load_result(folder))
    lines = changes.lines()
    assert len(lines) == 1 and 'arm_target.weight_error: committed "frozen", now "requantized"' in lines[0]
    assert changes.unchecked == 1  # the row without a config; the others are checked
    # the arm entry is a grid whose min-max-sized point cannot hold a frozen weight error: no arm setting fixes it
    assert rp.as_committed(rp.load_result(folder), changes) is None
    monkeypatch.setattr(rp, "run", lambda *a, **k: pytest.fail("nothing may run"))
    assert main(["reproduce", str(folder)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "1 committed row(s) would now run with other settings" in err and "weight_error" in err
    assert "no arm setting re-creates them" in err and "--allow-changed-settings" in err

    def rerun(result, out, cache=None, space=None):
        assert space is None  # today's defaults, as asked
        out.mkdir(parents=True, exist_ok=True)
        return result.rows

    monkeypatch.setattr(rp, "run", rerun)
    for row in aware[1:]:  # rows from before the arm's target was recorded
        config = json.loads(row["config"])
        del config["arm_target"]
        row["config"] = json.dumps(config)
    (folder / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    for flag in ("--allow-changed-settings", "--allow-changed-targets"):  # the second: its earlier name
        assert main(["reproduce", str(folder), flag, "--out", str(tmp_path / "out")]) == 0
        text = " ".join(capsys.readouterr().out.split())
        assert "1 row(s) now run with other settings" in text
        assert f"{len(aware) - 1 + 1} committed row(s) cannot be checked for changed settings" in text


def test_rows_that_ran_an_older_arm_default_are_re_run_as_they_ran(tmp_path, monkeypatch, capsys):
    """A default changed since (the noise ramp, say) is named in the re-run's arm, and the new rows pair
    with the committed ones although their arm_params now name it."""
    space = parse_space({"name": "ramp", "models": ["vit_mnist"], "bits": ["W4A4"], "ptq": ["minmax"],
                         "arms": ["plain", "arnq", {"name": "arnq", "bernoulli_p": [0.5, 0.25]}], "seeds": [0, 1],
                         "finetune": {"epochs": 1, "train_subset": 64, "val_size": 32}})
    folder = tmp_path / "result"
    folder.mkdir()
    (folder / "space.json").write_text(json.dumps(space.to_dict()))
    meta = provenance()
    rows = []
    for i, t in enumerate(space.trials()):
        config = json.loads(json.dumps(t.resolved(), default=str))
        if t.arm.arm == "arnq":
            assert config["arm"]["warmup_frac"] == 0.0
            config["arm"]["warmup_frac"] = 0.2  # the ramp these rows ran with, then the default
        rows.append({**cell_fields(t), "trial_id": f"t{i}", "status": "ok", "fp_acc": 90.0, "ft_acc": 89.0,
                     "q_acc": 50.0 + i, "code": rp.current_code("sweep"), "versions": meta["versions"],
                     "cpu": cpu_identity(), "git_commit": "abc", "git_dirty": False, "config": json.dumps(config)})
    (folder / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))

    result = rp.load_result(folder)
    changes = rp.changed_settings(result)
    assert len(changes.rows) == 6 and all("arm.warmup_frac: committed 0.2, now 0.0" in x for x in changes.lines())
    committed, back = rp.as_committed(result, changes)
    assert committed.arms == (("plain", {}), ("arnq", {"warmup_frac": 0.2}),
                              ("arnq", {"bernoulli_p": [0.5, 0.25], "warmup_frac": 0.2}))
    assert len(back) == 6  # every arnq row, the grid's points included

    q_of = {rp.cell_key(r): r["q_acc"] for r in rows}

    def rerun(result, out, cache=None, space=None):
        assert space is committed or space == committed
        out.mkdir(parents=True, exist_ok=True)
        new = [cell_fields(t) for t in space.trials()]
        assert sum(json.loads(r["arm_params"]).get("warmup_frac") == 0.2 for r in new) == 6
        return [{**r, "status": "ok", "fp_acc": 90.0, "ft_acc": 89.0,
                 "q_acc": q_of[back.get(rp.cell_key(r), rp.cell_key(r))]} for r in new]

    monkeypatch.setattr(rp, "run", rerun)
    assert main(["reproduce", str(folder), "--out", str(tmp_path / "out")]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "6 committed row(s) ran with settings that are no longer the defaults" in text
    assert "re-running them as they ran" in text and "reproduced: 24 of 24 values" in text


def test_a_bad_selection_is_refused_before_any_work(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(rp, "run", lambda *a, **k: pytest.fail("nothing may run"))
    assert main(["reproduce", str(_result(tmp_path)), "--cells", "deit_small"]) == 2
    assert "--cells 'deit_small' names nothing" in capsys.readouterr().err


def test_a_quantize_job_folder_is_read_and_narrowed_and_rows_without_code_get_a_tolerance(tmp_path):
    folder = tmp_path / "q"
    folder.mkdir()
    job = {"models": ["vit_mnist"], "ptq": ["minmax", "omse"], "bits": ["W8A8", "W4A4"], "seed": 0}
    (folder / "job.json").write_text(json.dumps({"job": job, "command": "arnq quantize ..."}))
    rows = [{"model": "vit_mnist", "bits": b, "ptq": m, "ptq_params": "{}", "arm": "plain", "arm_params": "{}",
             "seed": 0, "status": "ok", "q_acc": 90.0, "trial_id": f"{m}{b}", "versions": provenance()["versions"]}
            for m in job["ptq"] for b in job["bits"]]
    (folder / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    part = rp.select(rp.load_result(folder), cells=["W4A4"])
    assert part.kind == "quantize" and part.spec.bits == ("W4A4",) and part.spec.ptq == ("minmax", "omse")
    assert [r["bits"] for r in part.rows] == ["W4A4", "W4A4"]
    tol, why = rp.tolerance(part)
    assert tol == rp.DEFAULT_TOLERANCE and "committed code fingerprint not recorded" in why
    with pytest.raises(rp.ReproduceError, match=r"--seeds \[1\]:.*ran seeds \[0\]"):
        rp.select(part, seeds=[1])


@pytest.mark.slow
@pytest.mark.ray
def test_a_committed_sweep_reproduces_from_an_empty_cache(ray_home, tmp_path):
    """The real thing on a small committed result: two vit_fmnist fine-tunes (plain and PTQ-aware ARNQ, seed 3)
    and their RepQ-ViT W3A3 evaluations, from an empty cache, against results/composition/fmnist_replication.
    Its ARNQ row ran the 0.2 noise ramp, the default then, so the re-run names it in the arm.
    If this fails after a change meant to alter the numbers, regenerate that result with its space."""
    import os
    import subprocess
    import sys
    import tempfile

    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "HOME": str(ray_home), "RAY_USAGE_STATS_ENABLED": "0", "WANDB_MODE": "offline",
           "RAY_TMPDIR": tempfile.gettempdir()}
    env.pop("ARNQ_CACHE", None)
    out = tmp_path / "again"
    done = subprocess.run([sys.executable, "-m", "harness.cli", "reproduce", "results/composition/fmnist_replication",
                           "--cells", "repq_vit", "plain", "arnq", "--seeds", "3", "--out", str(out)],
                          cwd=root, env=env, capture_output=True, text=True, timeout=1200)
    text = " ".join(done.stdout.split())
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert "2 committed rows to reproduce" in text and "reproduced: 6 of 6 values within tolerance" in text
    assert 're-running them as they ran, with the arm(s) arnq {"warmup_frac": 0.2}' in text
    lines = (out / "reproduce.csv").read_text().splitlines()
    assert len(lines) == 1 + 6 and (out / "cache" / "finetunes").is_dir()


def test_a_record_whose_arms_todays_defaults_make_one_still_loads():
    """Two arm entries that ran as two arms (a default differed then) stay a record of what ran; a new space
    naming the same pair is refused, as before."""
    raw = {"name": "two", "models": ["vit_mnist"], "bits": ["W4A4"], "ptq": ["minmax"],
           "arms": ["plain", "arnq", {"name": "arnq", "warmup_frac": 0.0}], "finetune": {"epochs": 1}}
    with pytest.raises(SpaceError, match="is the same arm as"):
        parse_space(raw)
    record = {**raw, "ptq": [["minmax", {}]], "arms": [["plain", {}], ["arnq", {}], ["arnq", {"warmup_frac": 0.0}]]}
    space = space_from_record(record)
    assert [a for a, _ in space.arms] == ["plain", "arnq", "arnq"]
