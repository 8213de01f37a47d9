"""A regular (non-editable) install: the wheel ships the search spaces, and the CLI finds them from any directory."""

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"arnq", "harness", "search_spaces"}


def run(cmd, **kwargs):
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, **kwargs)
    assert out.returncode == 0, f"{cmd}\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}"
    return out


@pytest.mark.slow
def test_a_wheel_install_lists_validates_and_resolves_the_shipped_spaces(tmp_path):
    # build from a copy: an in-tree build would leave build/ and *.egg-info in the checkout
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".git", ".venv", "results", "build", "*.egg-info",
                                                                 "__pycache__", ".*_cache"))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    build = run(pip + ["wheel", "-v", "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "dist"),
                       str(source)])
    assert "deprecated" not in build.stdout + build.stderr  # e.g. the TOML-table licence (pip shows it with -v)
    (wheel,) = (tmp_path / "dist").glob("arnq_bench-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")} == PACKAGES
    shipped = sorted(p.name for p in (ROOT / "search_spaces").glob("*.yaml"))
    assert sorted(n.split("/")[1] for n in names if n.startswith("search_spaces/") and n.endswith(".yaml")) == shipped

    site, cwd = tmp_path / "site", tmp_path / "cwd"
    cwd.mkdir()
    run(pip + ["install", "--no-deps", "--no-compile", "--target", str(site), str(wheel)])
    # PYTHONPATH comes before the venv's editable finder: the installed copy is what runs
    env = {**os.environ, "PYTHONPATH": str(site)}
    where = run([sys.executable, "-c", "import harness, search_spaces; print(harness.__file__, search_spaces.__file__)"],
                cwd=cwd, env=env).stdout.split()
    assert all(Path(p).is_relative_to(site) for p in where), where

    cli = [sys.executable, "-m", "harness.cli"]
    listing = run(cli + ["ls", "spaces"], cwd=cwd, env=env).stdout
    assert all(f"search_spaces/{name}" in listing for name in shipped), listing
    for arg in ("search_spaces/quickstart.yaml", "quickstart"):
        out = run(cli + ["validate", arg], cwd=cwd, env=env).stdout
        assert "valid space 'quickstart'" in out and "trials (PTQ evaluations): 12" in out
    missing = subprocess.run(cli + ["validate", "quickstrt"], capture_output=True, text=True, cwd=cwd, env=env,
                             timeout=600)
    assert missing.returncode == 2 and "Did you mean 'quickstart'?" in missing.stderr
    # the console script the wheel declares
    assert "search_spaces/quickstart.yaml" in run([str(site / "bin" / "arnq"), "ls", "spaces"], cwd=cwd, env=env).stdout
