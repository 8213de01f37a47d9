"""Activation outliers of vit_fmnist checkpoints: max|x| / sigma and kurtosis where PTQ sets ranges.

    python results/vit_fmnist/outliers.py SNAPSHOT.safetensors... > outliers.jsonl

One JSON line per checkpoint: for every site kind (Linear inputs, q/k/v, attention
probabilities, GELU outputs, ...) the mean and max over sites of max|x|/sigma and of the
kurtosis, pooled over the seeded 256-image calibration subset of the train split.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from arnq.arms.diagnostics import activation_stats, linear_input_stats, summarize
from arnq.models import load_model
from arnq.train import make_loader


def checkpoint_outliers(path: Path) -> dict:
    loaded = load_model("vit_fmnist", weights=path, calib_size=256)
    batches = list(make_loader(loaded.data.calib, loaded.collate, batch_size=64, shuffle=False))
    stats = activation_stats(loaded.model, batches) | linear_input_stats(loaded.model, batches)
    return {"checkpoint": path.name, "sites": summarize(stats)}


if __name__ == "__main__":
    torch.set_num_threads(2)
    for arg in sys.argv[1:]:
        print(json.dumps(checkpoint_outliers(Path(arg))), flush=True)
