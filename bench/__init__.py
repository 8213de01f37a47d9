"""Cost benchmarks of the harness; each runs as a module from the repository root (`python -m bench.scale`)."""
