"""The report's provenance header: commits with the tree state, old and new rows alike."""

from harness.report.provenance import _commits


def test_commits_mark_dirty_trees_from_new_rows_and_old_stamps():
    rows = [{"git_commit": "abc", "git_dirty": True}, {"git_commit": "abc", "git_dirty": True},
            {"git_commit": "def", "git_dirty": False}, {"git_commit": "0ld+dirty"}, {"git_commit": None}]
    assert _commits(rows) == "abc+dirty, def, 0ld+dirty"


def test_a_report_of_rows_from_a_dirty_tree_says_how_many_and_a_clean_one_says_nothing():
    import pandas as pd

    from harness.report.provenance import provenance

    issues = pd.DataFrame({"status": []})
    rows = [{"status": "ok", "seed": 0, "git_commit": "abc", "git_dirty": d} for d in (True, False, False)]
    head = provenance(rows, None, "x", issues, now=None, hardware="h", rows_written=None)
    assert head["uncommitted_code"].startswith("1 of 3 rows ran from a tree with uncommitted changes")
    clean = provenance(rows[1:], None, "x", issues, now=None, hardware="h", rows_written=None)
    assert "uncommitted_code" not in clean


def test_sweep_and_quantize_warn_before_starting_from_a_dirty_tree(monkeypatch, capsys):
    import harness.store
    from harness.cli import _console, warn_if_dirty

    for dirty, said in ((True, True), (False, False), (None, False)):
        monkeypatch.setattr(harness.store, "git_dirty", lambda dirty=dirty: dirty)
        warn_if_dirty(_console())
        assert ("warning: the working tree has uncommitted changes" in capsys.readouterr().out) is said
