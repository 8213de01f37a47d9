"""Train a model's FP checkpoint and ship it in the package: ``python -m arnq.models.ship vit_fmnist``.

Trains through the FP cache (a cache hit ships the cached weights), optionally saving the
weights after every epoch (``--snapshots DIR``, for training-length studies), then writes
``arnq/models/checkpoints/<model>-seed<seed>.{safetensors,json}`` (`arnq.models.shipped`).
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import torch

from arnq.cache import save_state
from arnq.models.fp import TRAIN_INFO_FILE, load_model
from arnq.models.registry import MODELS
from arnq.models.shipped import write_shipped

log = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> int:
    """Train a model's FP checkpoint (through the FP cache) and ship it in the package."""
    parser = argparse.ArgumentParser(prog="python -m arnq.models.ship", description=main.__doc__)
    parser.add_argument("model", help="a registered model trained from scratch, e.g. vit_fmnist")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache", default=None, help="cache root (default: $ARNQ_CACHE or ~/.cache/arnq)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument(
        "--snapshots",
        default=None,
        metavar="DIR",
        help="also save the weights after each epoch as DIR/epochNN.safetensors (when it trains, not on a cache hit)",
    )
    parser.add_argument(
        "--dir",
        default=None,
        help="write the checkpoint and manifest here instead of the package's checkpoints/ (studies, tests)",
    )
    args = parser.parse_args(argv)
    spec = MODELS.get(args.model)
    if spec.source != "scratch":
        parser.error(
            f"model '{spec.name}' is not trained from scratch (source {spec.source}); nothing to ship"
        )
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    snapshot = None
    if args.snapshots:
        snapshots = Path(args.snapshots)
        snapshots.mkdir(parents=True, exist_ok=True)

        def snapshot(model: torch.nn.Module, epoch: int, record: dict) -> None:
            save_state(snapshots / f"epoch{epoch + 1:02d}.safetensors", model.state_dict())
            log.info("epoch %d: %s", epoch + 1, {k: v for k, v in record.items() if k != "epoch"})

    loaded = load_model(
        spec.name,
        seed=args.seed,
        cache_root=args.cache,
        num_threads=args.threads,
        shipped=False,
        on_fp_epoch=snapshot,
    )
    info = json.loads((loaded.checkpoint.parent / TRAIN_INFO_FILE).read_text())
    path = write_shipped(spec, args.seed, loaded.checkpoint, info, Path(args.dir) if args.dir else None)
    print(f"shipped {spec.name} seed {args.seed}: test accuracy {info['test_accuracy']:.4f} -> {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
