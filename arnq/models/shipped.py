"""FP checkpoints shipped inside the package, so a fresh machine need not train them.

A model trained from scratch whose FP training takes too long for a first run (`vit_fmnist`:
about half an hour on 2 CPU cores) ships its seed-0 checkpoint in
``arnq/models/checkpoints/``: ``<model>-seed<seed>.safetensors`` and a JSON manifest with the
file's sha256, the model spec it was trained from (architecture, recipe, data, seed), its test
accuracy and training record, and the commit, library versions and CPU that produced it.

`load_model` uses a shipped checkpoint only when its manifest's spec equals the registered
spec (so a changed recipe or architecture trains and caches a new checkpoint as before) and
its sha256 matches (a corrupted file or a Git LFS pointer fails with the fix). Regenerate one
with ``python -m arnq.models.ship vit_fmnist`` (trains through the FP cache, then writes
both files).
"""

from __future__ import annotations

import hashlib
import json
import logging
import platform
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from arnq.cache import library_versions, load_state

log = logging.getLogger(__name__)

CHECKPOINT_DIR = Path(__file__).parent / "checkpoints"
MANIFEST_FORMAT = 1
_warned: set[tuple[Path, tuple[str, ...]]] = set()  # mismatching manifests already logged


def shipped_spec(spec: Any, seed: int) -> dict[str, Any]:
    """What a shipped checkpoint must have been trained from to stand in for `spec`'s FP training at `seed`."""
    # as the manifest stores it (tuples become lists)
    return json.loads(json.dumps(spec.to_dict(seed=seed) | {"seed": seed}))


class ShippedCheckpointError(RuntimeError):
    """A shipped checkpoint's file does not match its manifest."""


@dataclass(frozen=True)
class ShippedCheckpoint:
    """A shipped FP checkpoint and its manifest."""

    path: Path
    manifest: dict[str, Any]

    @property
    def sha256(self) -> str:
        return self.manifest["sha256"]

    @property
    def test_accuracy(self) -> float:
        return float(self.manifest["train"]["test_accuracy"])

    @property
    def train_seconds(self) -> float:
        return float(self.manifest["train"]["train_seconds"])

    def load(self) -> dict[str, torch.Tensor]:
        """The state dict, after checking the file's sha256 against the manifest."""
        if not self.path.is_file():
            raise ShippedCheckpointError(
                f"shipped checkpoint {self.path} is missing although its manifest is present; reinstall "
                f"arnq-bench or regenerate it: python -m arnq.models.ship {self.manifest['model']}"
            )
        digest = file_sha256(self.path)
        if digest != self.sha256:
            raise ShippedCheckpointError(
                f"shipped checkpoint {self.path} has sha256 {digest[:12]}..., its manifest says "
                f"{self.sha256[:12]}... (a corrupted copy or a Git LFS pointer?); fetch the real file or "
                f"regenerate it: python -m arnq.models.ship {self.manifest['model']}"
            )
        return load_state(self.path)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _stem(name: str, seed: int) -> str:
    return f"{name}-seed{seed}"


def shipped_checkpoint(spec: Any, seed: int, directory: Path | None = None) -> ShippedCheckpoint | None:
    """The shipped checkpoint that stands in for `spec`'s FP training at `seed`, or None.

    None when none is shipped for (model, seed) or when the shipped one was trained from a
    different spec (logged, so a recipe change visibly retrains).
    """
    directory = CHECKPOINT_DIR if directory is None else directory
    manifest_path = directory / f"{_stem(spec.name, seed)}.json"
    if spec.source != "scratch" or not manifest_path.is_file():
        return None
    manifest = json.loads(manifest_path.read_text())
    wanted = shipped_spec(spec, seed)
    if manifest.get("format") != MANIFEST_FORMAT or manifest.get("spec") != wanted:
        changed = sorted(k for k in wanted if manifest.get("spec", {}).get(k) != wanted[k])
        if (manifest_path, tuple(changed)) in _warned:
            return None
        _warned.add((manifest_path, tuple(changed)))
        log.warning(
            "shipped FP checkpoint %s was trained from another spec (differs in: %s); training %s here instead "
            "(regenerate the shipped one with: python -m arnq.models.ship %s)",
            manifest_path.name,
            ", ".join(changed) or "format",
            spec.name,
            spec.name,
        )
        return None
    return ShippedCheckpoint(directory / manifest["file"], manifest)


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def write_shipped(
    spec: Any, seed: int, checkpoint: Path, train_info: dict[str, Any], directory: Path | None = None
) -> Path:
    """Copy a trained FP `checkpoint` into the package with its manifest; returns the manifest path."""
    directory = CHECKPOINT_DIR if directory is None else directory
    directory.mkdir(parents=True, exist_ok=True)
    stem = _stem(spec.name, seed)
    target = directory / f"{stem}.safetensors"
    shutil.copyfile(checkpoint, target)
    manifest = {
        "format": MANIFEST_FORMAT,
        "model": spec.name,
        "seed": seed,
        "file": target.name,
        "sha256": file_sha256(target),
        "spec": shipped_spec(spec, seed),
        "train": train_info,
        "produced_by": {
            "commit": _git("rev-parse", "HEAD"),
            "dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
            "versions": library_versions(),
            "machine": platform.processor() or platform.machine(),
        },
    }
    path = directory / f"{stem}.json"
    path.write_text(json.dumps(manifest, indent=2) + "\n")
    return path
