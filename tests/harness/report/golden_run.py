"""The golden run of the reporter tests, and the fixed date and machine that make its report reproducible.

golden/rows.jsonl: 2 models x 2 bits x 2 PTQ methods x (plain, arnq[schedule=linear], quanttune)
x 2 seeds, with a failed plain trial (vit_mnist W4A4 percentile seed 1), a stopped one
(minilm_rt W4A4 minmax quanttune seed 0), a missing one (minilm_rt W8A8 percentile arnq
seed 1), a failed first attempt superseded by its re-run, and a torn last line. The golden
outputs were checked by hand against the q_acc values in those rows.
"""

import os
import shutil
from datetime import datetime, timezone
from pathlib import Path

GOLDEN = Path(__file__).parent.parent / "golden"
NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
ROWS_WRITTEN = 1767225600  # 2026-01-01 00:00:00 UTC, the rows file's mtime in every test run
HARDWARE = "x86_64, 8 CPUs, 1 x NVIDIA H100 80GB HBM3"
GOLDEN_FILES = ("report.md", "leaderboard.csv", "best.csv", "thesis.csv", "issues.csv", "provenance.json")
PNG = b"\x89PNG\r\n\x1a\n"


def make_run(root: Path, with_space: bool = True) -> Path:
    run = root / "golden"
    run.mkdir()
    shutil.copy(GOLDEN / "rows.jsonl", run)
    if with_space:
        shutil.copy(GOLDEN / "space.json", run)
    os.utime(run / "rows.jsonl", (ROWS_WRITTEN, ROWS_WRITTEN))
    return run
