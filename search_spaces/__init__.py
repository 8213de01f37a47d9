"""The search spaces shipped with arnq-bench: YAML package data, no code (`arnq ls spaces` lists them)."""
