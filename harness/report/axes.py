"""The grid axes of a run (models, bits, PTQ methods, arm variants, seeds) and their report order."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

Variant = tuple[str, str]  # (arm, arm_params as canonical JSON)
PLAIN: Variant = ("plain", "{}")
Cell = tuple[str, str, str, Variant]  # (model, bits, ptq, variant)


def variant_label(arm: str, arm_params: str | Mapping[str, Any] = "{}") -> str:
    """'arnq[schedule=linear]': an arm and its grid point, as tables and plots name it."""
    params = json.loads(arm_params) if isinstance(arm_params, str) else dict(arm_params)
    if not params:
        return arm
    text = ",".join(f"{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in sorted(params.items()))
    return f"{arm}[{text}]"


def canonical(arm_params: str | Mapping[str, Any] | None) -> str:
    """arm_params as JSON with sorted keys, so equal grid points compare equal."""
    params = json.loads(arm_params) if isinstance(arm_params, str) else dict(arm_params or {})
    return json.dumps(params, sort_keys=True)


@dataclass(frozen=True)
class Axes:
    """The values a run covers along each grid axis, in report order (plain first among variants)."""

    models: tuple[str, ...]
    bits: tuple[str, ...]
    ptqs: tuple[str, ...]
    variants: tuple[Variant, ...]
    seeds: tuple[int, ...]

    def grid(self) -> set[tuple[str, str, str, Variant, int]]:
        return set(itertools.product(self.models, self.bits, self.ptqs, self.variants, self.seeds))

    def extended(self, other: Axes) -> Axes:
        """These axes, then whatever `other` has that they lack."""
        def merge(a: tuple, b: tuple) -> tuple:
            return a + tuple(x for x in b if x not in a)

        return Axes(merge(self.models, other.models), merge(self.bits, other.bits), merge(self.ptqs, other.ptqs),
                    merge(self.variants, other.variants), merge(self.seeds, other.seeds))

    def sort_key(self, model: str, bits: str, ptq: str, variant: Variant, seed: int | None = None) -> tuple[int, ...]:
        pairs = ((self.models, model), (self.bits, bits), (self.ptqs, ptq), (self.variants, variant),
                 (self.seeds, seed))
        return tuple(axis.index(v) if v in axis else len(axis) for axis, v in pairs)


def _descending_bits(bits: Iterable[str]) -> list[str]:
    """Bit-widths from the widest down; names that do not parse keep their order at the end."""
    from arnq.ptq import parse_bits

    def key(text: str) -> tuple[int, int, int]:
        try:
            w_bits, a_bits = parse_bits(text)
        except ValueError:
            return (1, 0, 0)
        return (0, -w_bits, -a_bits)

    return sorted(dict.fromkeys(bits), key=key)


def axes_from_rows(rows: Sequence[Mapping[str, Any]]) -> Axes:
    """Axes of what the rows show: first-seen order, bits descending, seeds ascending."""
    variants = dict.fromkeys((r["arm"], r["arm_params"]) for r in rows)
    plain = [v for v in variants if v[0] == "plain"]
    return Axes(
        models=tuple(dict.fromkeys(r["model"] for r in rows)),
        bits=tuple(_descending_bits(r["bits"] for r in rows)),
        ptqs=tuple(dict.fromkeys(r["ptq"] for r in rows)),
        variants=tuple(plain + [v for v in variants if v[0] != "plain"]),
        seeds=tuple(sorted({r["seed"] for r in rows})),
    )


def axes_from_space(space: Mapping[str, Any]) -> Axes:
    """Axes of a space.json (a `Space.to_dict()`): its grid, plain first as the sweep runs it."""
    from harness.grid import expand_params

    variants = [(arm, canonical(point)) for arm, params in space["arms"] for point in expand_params(arm, params)]
    variants = sorted(dict.fromkeys([PLAIN, *variants]), key=lambda v: v[0] != "plain")
    return Axes(models=tuple(space["models"]), bits=tuple(space["bits"]),
                ptqs=tuple(dict.fromkeys(name for name, _ in space["ptq"])), variants=tuple(variants),
                seeds=tuple(space["seeds"]))
