"""The golden run reported once for every reporter test that only reads its files."""

import pytest

from harness.report import write_report
from tests.harness.report.golden_run import HARDWARE, NOW, make_run


@pytest.fixture(scope="session")
def golden_run(tmp_path_factory):
    """The golden run reported once in every format: (run dir, returned paths)."""
    run = make_run(tmp_path_factory.mktemp("report"))
    return run, write_report(run, now=NOW, hardware=HARDWARE)
