"""Content-addressed cache: hits, corruption detection, concurrent builds, safetensors state."""

from __future__ import annotations

import importlib
import json
import logging
import multiprocessing
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from arnq.cache import (
    META_FILE,
    cache_root,
    code_fingerprint,
    content_key,
    entry_path,
    get_or_build,
    library_versions,
    load_state,
    read_meta,
    save_state,
    validate_entry,
)

SPEC = {"model": "toy", "recipe": {"epochs": 2, "lr": 1e-3}, "seed": 0}


class CountingBuild:
    """A build that writes two files and counts its calls."""

    def __init__(self, payload: bytes = b"x" * 4096) -> None:
        self.calls = 0
        self.payload = payload

    def __call__(self, out: Path) -> None:
        self.calls += 1
        (out / "weights.bin").write_bytes(self.payload)
        (out / "sub").mkdir()
        (out / "sub" / "info.json").write_text(json.dumps({"calls": self.calls}))


def test_cache_root_env(monkeypatch, tmp_path):
    monkeypatch.setenv("ARNQ_CACHE", str(tmp_path / "c"))
    assert cache_root() == tmp_path / "c"
    monkeypatch.delenv("ARNQ_CACHE")
    assert cache_root() == Path.home() / ".cache" / "arnq"


def test_content_key_canonical_and_sensitive():
    a = content_key({"b": 1, "a": [1, 2], "c": {"y": 1, "x": 2}})
    b = content_key({"c": {"x": 2, "y": 1}, "a": (1, 2), "b": 1})
    assert a == b
    assert len(a) == 20 and int(a, 16) >= 0
    assert content_key({**SPEC, "seed": 1}) != content_key(SPEC)
    assert content_key({**SPEC, "recipe": {"epochs": 2, "lr": 2e-3}}) != content_key(SPEC)
    with pytest.raises(TypeError, match="not JSON-serialisable"):
        content_key({"f": object()})


def test_library_versions_lists_libraries():
    versions = library_versions()
    assert set(versions) == {"python", "torch", "timm", "transformers"}  # the project itself: code_fingerprint
    assert versions["torch"] == torch.__version__


PROBE_OPS = '''
"""Probe module."""


def scale(x):
    """Twice x."""
    return 2 * x  # doubled
'''


def _fingerprint(*modules: str) -> str:
    """A fresh fingerprint: the per-process memo cleared and the import system told about new files."""
    code_fingerprint.cache_clear()
    importlib.invalidate_caches()
    return code_fingerprint(*modules)


def test_code_fingerprint_follows_code_not_docstrings_or_comments(tmp_path, monkeypatch):
    pkg = tmp_path / "fingerprint_probe"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "ops.py").write_text(PROBE_OPS)
    monkeypatch.syspath_prepend(str(tmp_path))
    base = _fingerprint("fingerprint_probe")
    assert len(base) == 16 and int(base, 16) >= 0

    (pkg / "ops.py").write_text(PROBE_OPS.replace("Twice x.", "x doubled,\n    nothing else.")
                                .replace("# doubled", "# times two").replace("Probe module.", "Ops."))
    assert _fingerprint("fingerprint_probe") == base

    (pkg / "ops.py").write_text(PROBE_OPS.replace("2 * x", "3 * x"))
    assert code_fingerprint("fingerprint_probe") == base  # memoized: what this process imported
    changed = _fingerprint("fingerprint_probe")
    assert changed != base
    assert content_key({**SPEC, "code": changed}) != content_key({**SPEC, "code": base})

    (pkg / "ops.py").write_text(PROBE_OPS)
    assert _fingerprint("fingerprint_probe") == base
    (pkg / "extra.py").write_text("")
    assert _fingerprint("fingerprint_probe") != base  # a new (even empty) file
    (pkg / "extra.py").unlink()
    (pkg / "sub").mkdir()
    (pkg / "sub" / "ops.py").write_text(PROBE_OPS)
    assert _fingerprint("fingerprint_probe") != base  # files in subfolders count, by their relative path


def test_code_fingerprint_of_single_modules_and_bad_names(tmp_path, monkeypatch):
    (tmp_path / "fingerprint_probe_module.py").write_text(PROBE_OPS)
    monkeypatch.syspath_prepend(str(tmp_path))
    single = _fingerprint("fingerprint_probe_module")
    (tmp_path / "fingerprint_probe_module.py").write_text(PROBE_OPS.replace("return", "y = x\n    return"))
    assert _fingerprint("fingerprint_probe_module") != single
    train = code_fingerprint("arnq.train")
    assert train != code_fingerprint("arnq")
    assert code_fingerprint("arnq.train", "arnq.batch") == code_fingerprint("arnq.batch", "arnq.train")
    with pytest.raises(ValueError, match="no module named 'arnq.nonexistent'"):
        code_fingerprint("arnq.nonexistent")
    with pytest.raises(ValueError, match="at least one module"):
        code_fingerprint()


def test_code_fingerprint_is_the_same_in_another_process_and_another_location(tmp_path):
    """Installed elsewhere (a copy, as a regular install would place it), the same code has the same fingerprint."""
    repo = Path(__file__).resolve().parent.parent
    for package in ("arnq", "harness"):
        shutil.copytree(repo / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    script = "from arnq.cache import code_fingerprint; print(code_fingerprint('arnq', 'harness.pipeline'))"
    other = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=tmp_path,
                           env={**os.environ, "PYTHONHASHSEED": "123", "PYTHONPATH": str(tmp_path)})
    assert other.stdout.strip() == code_fingerprint("arnq", "harness.pipeline")


def test_build_once_then_hit(tmp_path):
    build = CountingBuild()
    first = get_or_build("fp", SPEC, build, root=tmp_path)
    assert build.calls == 1
    assert first == tmp_path / "fp" / content_key(SPEC)
    meta = read_meta(first)
    assert meta["spec"] == SPEC
    assert set(meta["files"]) == {"weights.bin", "sub/info.json"}
    assert meta["files"]["weights.bin"]["size"] == 4096
    start = time.perf_counter()
    second = get_or_build("fp", SPEC, build, root=tmp_path)
    assert time.perf_counter() - start < 0.5
    assert second == first and build.calls == 1
    assert not list((tmp_path / "fp").glob(".*tmp-*"))  # no temp dirs left behind


def test_spec_change_gives_new_entry(tmp_path):
    build = CountingBuild()
    a = get_or_build("fp", SPEC, build, root=tmp_path)
    b = get_or_build("fp", {**SPEC, "seed": 1}, build, root=tmp_path)
    assert a != b and build.calls == 2


def test_corrupted_byte_is_detected_and_rebuilt(tmp_path, caplog):
    build = CountingBuild()
    entry = get_or_build("fp", SPEC, build, root=tmp_path)
    data = bytearray((entry / "weights.bin").read_bytes())
    data[100] ^= 0x01
    (entry / "weights.bin").write_bytes(bytes(data))
    assert "sha256 mismatch" in validate_entry(entry, SPEC)
    with caplog.at_level(logging.WARNING, logger="arnq.cache"):
        again = get_or_build("fp", SPEC, build, root=tmp_path)
    assert build.calls == 2 and again == entry
    assert (entry / "weights.bin").read_bytes() == b"x" * 4096
    assert json.loads((entry / "sub" / "info.json").read_text()) == {"calls": 2}
    assert any("invalid" in r.getMessage() and "sha256" in r.getMessage() for r in caplog.records)
    assert validate_entry(entry, SPEC) is None


def test_truncated_file_is_rebuilt(tmp_path):
    build = CountingBuild()
    entry = get_or_build("fp", SPEC, build, root=tmp_path)
    with open(entry / "weights.bin", "r+b") as fh:
        fh.truncate(1000)
    assert "size 1000" in validate_entry(entry, SPEC)
    get_or_build("fp", SPEC, build, root=tmp_path)
    assert build.calls == 2
    assert (entry / "weights.bin").stat().st_size == 4096


def test_missing_file_meta_or_spec_mismatch_is_rebuilt(tmp_path):
    build = CountingBuild()
    entry = get_or_build("fp", SPEC, build, root=tmp_path)
    (entry / "sub" / "info.json").unlink()
    assert "missing ['sub/info.json']" in validate_entry(entry, SPEC)
    get_or_build("fp", SPEC, build, root=tmp_path)
    assert build.calls == 2
    (entry / META_FILE).write_text("{not json")
    assert "unreadable" in validate_entry(entry, SPEC)
    get_or_build("fp", SPEC, build, root=tmp_path)
    assert build.calls == 3
    meta = read_meta(entry)
    meta["spec"]["seed"] = 99  # an entry whose recorded spec does not match its key
    (entry / META_FILE).write_text(json.dumps(meta))
    assert "spec" in validate_entry(entry, SPEC)
    get_or_build("fp", SPEC, build, root=tmp_path)
    assert build.calls == 4 and validate_entry(entry, SPEC) is None


def test_failed_build_leaves_nothing(tmp_path):
    def broken(out: Path) -> None:
        (out / "half.bin").write_bytes(b"12")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        get_or_build("fp", SPEC, broken, root=tmp_path)
    assert not entry_path("fp", SPEC, tmp_path).exists()
    assert not list((tmp_path / "fp").glob(".*tmp-*"))
    build = CountingBuild()
    get_or_build("fp", SPEC, build, root=tmp_path)
    assert build.calls == 1


def test_invalid_kind_rejected(tmp_path):
    with pytest.raises(ValueError, match="cache kind"):
        get_or_build("../escape", SPEC, CountingBuild(), root=tmp_path)


class SlowMarkedBuild:
    """A picklable build that appends to a marker file, then sleeps so a rival must wait."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __call__(self, out: Path) -> None:
        with open(self.marker, "a") as fh:
            fh.write("built\n")
        time.sleep(1.0)
        (out / "weights.bin").write_bytes(b"y" * 1024)


def _concurrent_worker(root: str, marker: str, barrier, results) -> None:
    barrier.wait()
    path = get_or_build("fp", SPEC, SlowMarkedBuild(marker), root=root)
    results.put(str(path))


def test_concurrent_processes_build_once(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    marker = tmp_path / "marker.txt"
    barrier = ctx.Barrier(2)
    results = ctx.Queue()
    procs = [
        ctx.Process(target=_concurrent_worker, args=(str(tmp_path / "cache"), str(marker), barrier, results))
        for _ in range(2)
    ]
    for p in procs:
        p.start()
    paths = [results.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert marker.read_text().splitlines() == ["built"]
    assert paths[0] == paths[1] == str(entry_path("fp", SPEC, tmp_path / "cache"))
    assert validate_entry(Path(paths[0]), SPEC) is None


def test_save_load_state_roundtrip(tmp_path):
    shared = torch.randn(4, 3)
    state = {"w": shared, "tied": shared, "b": torch.arange(5, dtype=torch.int64), "t": torch.randn(3, 4).t()}
    save_state(tmp_path / "s.safetensors", state)
    loaded = load_state(tmp_path / "s.safetensors")
    assert set(loaded) == set(state)
    for k, v in state.items():
        assert torch.equal(loaded[k], v) and loaded[k].dtype == v.dtype
    raw = (tmp_path / "s.safetensors").read_bytes()
    header_len = int.from_bytes(raw[:8], "little")  # safetensors layout: u64 header size + JSON header
    assert raw[8:9] == b"{" and json.loads(raw[8 : 8 + header_len])["b"]["dtype"] == "I64"


def test_linked_cache_shares_every_kind_but_the_rebuilt_ones(tmp_path):
    from arnq.cache import linked_cache

    source = tmp_path / "source"
    for kind in ("fp_models", "finetunes", "trials"):
        (source / kind / "k").mkdir(parents=True)
    root = linked_cache(tmp_path / "bench", source, rebuild=("finetunes", "trials"))
    assert sorted(p.name for p in root.iterdir()) == ["fp_models"]
    assert (root / "fp_models").resolve() == (source / "fp_models").resolve() and (root / "fp_models" / "k").is_dir()
    assert linked_cache(root, source, rebuild=("finetunes", "trials")) == root  # idempotent
    assert linked_cache(tmp_path / "empty", tmp_path / "missing", rebuild=()).is_dir()
