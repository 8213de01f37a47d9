"""Content-addressed artifact cache: build once per spec, verify by sha256, rebuild when corrupt.

An entry lives in ``root/<kind>/<key>/`` where ``key`` hashes the canonical JSON of
its spec. ``meta.json`` in the entry records the spec and the sha256 of every file;
a hit re-hashes the files, so a truncated, corrupted or missing file (or a spec that
does not match) is detected, the entry is removed and rebuilt. Builds hold a file
lock per key and write into a temporary sibling directory that is renamed into
place, so concurrent processes build an artifact once and never see half of one.
Tensors are stored with safetensors, never pickle. Specs name the code that builds an
entry (`code_fingerprint`) and the library versions, so other code never gets its entry.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import hashlib
import importlib.metadata
import importlib.util
import json
import logging
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock
from safetensors.torch import load_file, save_file

log = logging.getLogger(__name__)

META_FILE = "meta.json"
KEY_LENGTH = 20
_KIND_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789_-.")


def cache_root() -> Path:
    """The cache directory: $ARNQ_CACHE if set, else ~/.cache/arnq."""
    env = os.environ.get("ARNQ_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "arnq"


def linked_cache(path: Path | str, source: Path | str, rebuild: tuple[str, ...]) -> Path:
    """A cache root at `path` that shares `source`'s entries of every kind but those in `rebuild`.

    Each other kind directory of `source` (for example the FP checkpoints) is symlinked in;
    the `rebuild` kinds start empty, so whatever uses `path` builds them afresh. Used to
    time a stage without paying again for the ones before it.
    """
    path, source = Path(path), Path(source)
    path.mkdir(parents=True, exist_ok=True)
    if source.is_dir():
        for entry in source.iterdir():
            if entry.is_dir() and entry.name not in rebuild and not (path / entry.name).exists():
                (path / entry.name).symlink_to(entry.resolve())
    return path


def _json_default(obj: Any) -> Any:
    """JSON encoding for the non-JSON types a spec may hold (paths, dataclasses, sets)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    if isinstance(obj, Mapping):
        return dict(obj)
    raise TypeError(
        f"cache spec value {obj!r} of type {type(obj).__name__} is not JSON-serialisable; "
        "use str/int/float/bool/None, lists, dicts, paths or dataclasses"
    )


def canonical_json(spec: Mapping[str, Any]) -> str:
    """Canonical JSON of a spec: sorted keys, no whitespace, tuples as lists."""
    return json.dumps(spec, sort_keys=True, separators=(",", ":"), default=_json_default, allow_nan=False)


def normalize_spec(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The spec as plain JSON data, the form stored in meta.json and compared on a hit."""
    return json.loads(canonical_json(spec))


def content_key(spec: Mapping[str, Any]) -> str:
    """Hex sha256 prefix of the canonical JSON of `spec`."""
    return hashlib.sha256(canonical_json(spec).encode()).hexdigest()[:KEY_LENGTH]


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def library_versions() -> dict[str, str | None]:
    """Versions of python and the libraries whose changes can change a built artifact.

    The project's own code is keyed by `code_fingerprint`, not by its package version.
    """
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "timm": _version("timm"),
        "transformers": _version("transformers"),
    }


@functools.cache
def code_fingerprint(*modules: str) -> str:
    """Short hash of the code of the named modules or packages (every ``.py`` under a package).

    Hashes each file's AST without docstrings, so comments, docstrings and formatting do
    not change it but any code change, added, removed or renamed file does. Cache keys
    hold it so an entry built by other code is not served: fine-tunes and trial results
    key ``code_fingerprint("arnq", "harness.pipeline")``, FP checkpoints that of FP
    training (``"arnq.models", "arnq.data", "arnq.train", "arnq.batch"``). Memoized per process (the source does not change under a running one);
    a dotted name imports its parent packages to find it.
    """
    if not modules:
        raise ValueError("code_fingerprint needs at least one module name, e.g. code_fingerprint('arnq')")
    digest = hashlib.sha256()
    for name in sorted(set(modules)):
        digest.update(f"module {name}\n".encode())
        for rel, path in _source_files(name):
            digest.update(f"file {rel}\n".encode())
            digest.update(_ast_digest(path.read_bytes(), str(path)))
    return digest.hexdigest()[:16]


def _source_files(name: str) -> list[tuple[str, Path]]:
    """(relative path, path) of every source file of module or package `name`, sorted."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError) as exc:
        raise ValueError(f"code_fingerprint: cannot locate module {name!r} ({exc})") from exc
    if spec is None:
        raise ValueError(f"code_fingerprint: no module named {name!r}; give an importable module or package name")
    if spec.submodule_search_locations:  # a package, possibly a namespace package spread over directories
        files = [
            (path.relative_to(base).as_posix(), path)
            for base in map(Path, spec.submodule_search_locations)
            for path in base.rglob("*.py")
        ]
        return sorted(files)
    if spec.origin is None or not spec.origin.endswith(".py"):
        raise ValueError(f"code_fingerprint: module {name!r} has no Python source (origin {spec.origin!r})")
    return [(Path(spec.origin).name, Path(spec.origin))]


class _DropDocstrings(ast.NodeTransformer):
    """Removes statements that are a bare string (docstrings): they do not change what code does."""

    def visit_Expr(self, node: ast.Expr) -> ast.Expr | None:
        if isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            return None
        return node


@functools.cache
def _ast_digest(source: bytes, filename: str) -> bytes:
    """sha256 of the docstring-free AST of `source` (memoized: fingerprints of overlapping modules parse once)."""
    tree = _DropDocstrings().visit(ast.parse(source, filename=filename))
    return hashlib.sha256(ast.dump(tree, include_attributes=False).encode()).digest()


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _entry_files(entry: Path) -> list[Path]:
    return sorted(p for p in entry.rglob("*") if p.is_file() and p.relative_to(entry).as_posix() != META_FILE)


def read_meta(entry: Path) -> dict[str, Any]:
    """The parsed meta.json of a cache entry."""
    return json.loads((Path(entry) / META_FILE).read_text())


def validate_entry(entry: Path, spec: Mapping[str, Any] | None = None) -> str | None:
    """None if `entry` is complete and matches `spec`, else the reason it is not."""
    entry = Path(entry)
    if not entry.is_dir():
        return "missing"
    try:
        meta = read_meta(entry)
    except (OSError, ValueError) as exc:
        return f"unreadable {META_FILE} ({exc})"
    if spec is not None and meta.get("spec") != normalize_spec(spec):
        return "spec in meta.json differs from the requested spec"
    files = meta.get("files")
    if not isinstance(files, dict):
        return f"{META_FILE} lists no files"
    present = {p.relative_to(entry).as_posix() for p in _entry_files(entry)}
    if present != set(files):
        missing, extra = sorted(set(files) - present), sorted(present - set(files))
        return f"file set differs from {META_FILE} (missing {missing}, unexpected {extra})"
    for rel, info in files.items():
        path = entry / rel
        size = path.stat().st_size
        if size != info.get("size"):
            return f"{rel}: size {size} != recorded {info.get('size')} (truncated or overwritten)"
        if file_sha256(path) != info.get("sha256"):
            return f"{rel}: sha256 mismatch (corrupted)"
    return None


def _write_meta(entry: Path, kind: str, key: str, spec: Mapping[str, Any], build_seconds: float) -> None:
    files = {
        p.relative_to(entry).as_posix(): {"sha256": file_sha256(p), "size": p.stat().st_size}
        for p in _entry_files(entry)
    }
    meta = {
        "kind": kind,
        "key": key,
        "spec": normalize_spec(spec),
        "files": files,
        "build_seconds": round(build_seconds, 3),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    tmp = entry / (META_FILE + ".tmp")
    tmp.write_text(json.dumps(meta, indent=2, sort_keys=True))
    os.replace(tmp, entry / META_FILE)


def entry_path(kind: str, spec: Mapping[str, Any], root: Path | str | None = None) -> Path:
    """Where the entry for (`kind`, `spec`) lives, whether or not it exists."""
    if not kind or not set(kind) <= _KIND_CHARS or kind.startswith("."):
        raise ValueError(f"cache kind {kind!r} is invalid; use lowercase letters, digits, '_', '-' or '.'")
    return Path(root if root is not None else cache_root()) / kind / content_key(spec)


def get_or_build(
    kind: str,
    spec: Mapping[str, Any],
    build: Callable[[Path], None],
    root: Path | str | None = None,
    *,
    lock_timeout: float = -1,
) -> Path:
    """Directory of the valid entry for (`kind`, `spec`), calling `build(tmp_dir)` to fill it if needed."""
    final = entry_path(kind, spec, root)
    if validate_entry(final, spec) is None:
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(final.parent / f"{final.name}.lock"), timeout=lock_timeout):
        reason = validate_entry(final, spec)  # another process may have built it while we waited
        if reason is None:
            return final
        if final.exists():
            log.warning("cache entry %s is invalid (%s); removing and rebuilding", final, reason)
            shutil.rmtree(final)
        for stale in final.parent.glob(f".{final.name}.tmp-*"):  # crashed builds; we hold the lock
            shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
        try:
            start = time.perf_counter()
            build(tmp)
            _write_meta(tmp, kind, final.name, spec, time.perf_counter() - start)
            os.replace(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    log.info("cache: built %s/%s", kind, final.name)
    return final


def save_state(
    path: Path | str, state_dict: Mapping[str, torch.Tensor], metadata: Mapping[str, str] | None = None
) -> None:
    """Save a tensor state dict with safetensors (shared tensors are cloned)."""
    seen: set[int] = set()
    tensors: dict[str, torch.Tensor] = {}
    for name, tensor in state_dict.items():
        t = tensor.detach().to("cpu").contiguous()
        ptr = t.untyped_storage().data_ptr()
        if ptr in seen and t.numel():
            t = t.clone()
        seen.add(t.untyped_storage().data_ptr())
        tensors[name] = t
    save_file(tensors, str(path), metadata=dict(metadata) if metadata else None)


def load_state(path: Path | str, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """Load a safetensors state dict."""
    return load_file(str(path), device=str(device))
