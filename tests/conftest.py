"""Shared fixtures: tiny random-init models of every supported family, and their inputs."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

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


RAY_BOOTSTRAP = "provider:\n  type: local\n"


@pytest.fixture(scope="session")
def ray_home(tmp_path_factory):
    """A HOME for Ray's processes whose ~/ray_bootstrap_config.yaml names a local provider.

    Ray's dashboard calls usage_lib.get_cluster_config_to_report at start; without that
    file it probes the cloud metadata addresses (169.254.169.254, metadata.google.internal)
    even with usage stats disabled. With it, no request is made, so tests stay on loopback.
    """
    home = tmp_path_factory.mktemp("ray_home")
    (home / "ray_bootstrap_config.yaml").write_text(RAY_BOOTSTRAP)
    return home


@pytest.fixture(scope="session")
def ray_local(ray_home):
    """A local Ray instance started with no metadata probe and no usage stats, shut down at the end."""
    import ray

    from harness.sweep import scoped_env

    with scoped_env(HOME=str(ray_home), RAY_USAGE_STATS_ENABLED="0"):  # inherited by the processes ray.init spawns
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def vit_mnist_cache(tmp_path_factory):
    """An artifact cache holding the trained vit_mnist FP checkpoint (trained once per session, ~1 min)."""
    from arnq.models import load_model

    root = tmp_path_factory.mktemp("arnq_cache")
    seed = os.environ.get("ARNQ_TEST_SEED_CACHE")  # developer shortcut: reuse FP checkpoints built before
    if seed and (Path(seed) / "fp_models").is_dir():
        shutil.copytree(Path(seed) / "fp_models", root / "fp_models")
    load_model("vit_mnist", cache_root=root)  # validated (hash) and reused, or built
    return root


@pytest.fixture
def ray_subprocess_env(ray_home, vit_mnist_cache):
    """Environment of a child process that starts its own Ray: neutralised HOME, the test cache, no traffic."""
    root = Path(__file__).resolve().parents[1]
    return {**os.environ, "HOME": str(ray_home), "ARNQ_CACHE": str(vit_mnist_cache), "RAY_USAGE_STATS_ENABLED": "0",
            "WANDB_MODE": "offline", "PYTHONPATH": str(root)}
