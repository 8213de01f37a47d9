"""Shared fixtures: tiny random-init models of every supported family, and their inputs."""

from __future__ import annotations

import os

import pytest
import torch

# Tests never reach the network: hubs are offline, W&B is offline, Ray sends no usage stats.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


def tiny_vit() -> torch.nn.Module:
    from timm.models.vision_transformer import VisionTransformer

    torch.manual_seed(0)
    return VisionTransformer(img_size=32, patch_size=8, embed_dim=64, depth=2, num_heads=4, num_classes=10).eval()


def tiny_swin() -> torch.nn.Module:
    from timm.models.swin_transformer import SwinTransformer

    torch.manual_seed(0)
    return SwinTransformer(
        img_size=32, patch_size=2, window_size=4, embed_dim=32, depths=(2, 2), num_heads=(2, 4), num_classes=10
    ).eval()


def tiny_bert() -> torch.nn.Module:
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    cfg = BertConfig(
        vocab_size=120, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
        num_labels=2, max_position_embeddings=64, attn_implementation="eager", initializer_range=0.2,
    )
    return BertForSequenceClassification(cfg).eval()


def image_batch(n: int = 8, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def text_batch(n: int = 8, seed: int = 1, length: int = 16, pad_first: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, 120, (n, length), generator=gen)
    mask = torch.ones(n, length, dtype=torch.long)
    if pad_first:
        mask[0, length - pad_first:] = 0
        ids[0, length - pad_first:] = 0
    return {"input_ids": ids, "attention_mask": mask}


FAMILY_CASES = {
    "vit": (tiny_vit, image_batch),
    "swin": (tiny_swin, image_batch),
    "bert": (tiny_bert, text_batch),
}


@pytest.fixture(params=sorted(FAMILY_CASES))
def family_case(request):
    """(family, model factory, input factory) for each supported model family."""
    build, make_inputs = FAMILY_CASES[request.param]
    return request.param, build, make_inputs
