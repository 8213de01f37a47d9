"""The report's provenance header: commits with the tree state, old and new rows alike."""

from harness.report.provenance import _commits


def test_commits_mark_dirty_trees_from_new_rows_and_old_stamps():
    rows = [{"git_commit": "abc", "git_dirty": True}, {"git_commit": "abc", "git_dirty": True},
            {"git_commit": "def", "git_dirty": False}, {"git_commit": "0ld+dirty"}, {"git_commit": None}]
    assert _commits(rows) == "abc+dirty, def, 0ld+dirty"
