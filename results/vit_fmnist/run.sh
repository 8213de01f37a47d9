#!/usr/bin/env bash
# vit_fmnist: what min-max PTQ costs it by training length, and how its activation outliers
# grow, and at a narrower width. Every number in README.md comes from the files this script
# writes here. About 70 min on 2 CPU cores (25 min of FP training with a snapshot after every
# epoch, the grids, then the narrower model's training and PTQ).
# The PTQ method tables for the shipped model are in results/ptq_methods/.
set -euo pipefail
cd "$(dirname "$0")/../.."
here=results/vit_fmnist
py=.venv/bin/python
export ARNQ_OFFLINE=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1

# Retrain the shipped recipe from scratch in a private cache, keeping the weights after
# every epoch (not committed: 3 MB each). Epoch 15 is the shipped model.
work=$(mktemp -d)
$py -m arnq.models.ship vit_fmnist --threads 2 --cache "$work/cache" --dir "$work/ship" \
  --snapshots "$work/snapshots"
cp "$work/ship/vit_fmnist-seed0.json" "$here/retrained-seed0.json"
snaps=()
for e in 01 02 03 05 08 10 12 15; do
  snaps+=("$work/snapshots/epoch$e.safetensors")
  .venv/bin/arnq quantize --model vit_fmnist --weights "$work/snapshots/epoch$e.safetensors" \
    --ptq minmax --bits W8A8 W6A6 W4A8 W8A4 W4A4 W3A3 --threads 2 --out "$here/epochs/epoch$e"
done
$py "$here/outliers.py" "${snaps[@]}" > "$here/epochs/outliers.jsonl"

# A narrower model with the same recipe (width 64, depth 6), then its PTQ.
$py "$here/sizes.py" --cache "$work/cache" --sizes 64x6 --threads 2
rm -rf "$work"

$py "$here/table.py"
