"""The grid axes of a run (models, bits, PTQ methods, arm variants, seeds) and their report order."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

Variant = tuple[str, str]  # (arm, arm_params as canonical JSON)
PLAIN: Variant = ("plain", "{}")
Cell = tuple[str, str, str, Variant]  # (model, bits, ptq, variant)


def variant_label(arm: str, arm_params: str | Mapping[str, Any] = "{}") -> str:
    """'arnq[schedule=linear]': an arm and every parameter of its grid point (the legend's full name)."""
    params = json.loads(arm_params) if isinstance(arm_params, str) else dict(arm_params)
    return f"{arm}[{params_text(params)}]" if params else arm


def params_text(params: Mapping[str, Any], sep: str = ",") -> str:
    """'bernoulli_p=0.5,delta_observer=minmax': parameters by name, strings bare, other values as JSON."""
    return sep.join(f"{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in sorted(params.items()))


def _distinguishing_keys(params: Sequence[Mapping[str, Any]]) -> tuple[str, ...]:
    """The fewest parameter names whose values (absent counting as a value) tell every params apart;
    among equally few, the alphabetically first."""
    keys = sorted({k for p in params for k in p})
    for size in range(len(keys) + 1):
        for combo in itertools.combinations(keys, size):
            seen = {tuple(json.dumps(p[k], sort_keys=True) if k in p else None for k in combo)
                    for p in params}
            if len(seen) == len(params):
                return combo
    return tuple(keys)


def short_labels(variants: Sequence[Variant], given: Mapping[Variant, str] | None = None) -> dict[Variant, str]:
    """A short, stable label per variant: its given label, else its arm name, plus the fewest
    parameters that tell it apart from the other variants sharing that name.

    `arnq` and `{arnq, delta_observer: minmax}` become 'arnq' and 'arnq[delta_observer=minmax]';
    a parameter every variant of a name shares is left out. Raises ValueError if two variants
    would still share a label (a given label equal to another variant's).
    """
    given = dict(given or {})
    groups: dict[str, list[Variant]] = {}
    for variant in dict.fromkeys(variants):
        groups.setdefault(given.get(variant, variant[0]), []).append(variant)
    labels: dict[Variant, str] = {}
    for base, members in groups.items():
        params = [json.loads(v[1]) for v in members]
        keys = _distinguishing_keys(params) if len(members) > 1 else ()
        for variant, p in zip(members, params, strict=True):
            shown = params_text({k: p[k] for k in keys if k in p})
            labels[variant] = f"{base}[{shown}]" if shown else base
    clashes = [label for label in set(labels.values()) if list(labels.values()).count(label) > 1]
    if clashes:
        raise ValueError(f"arm label(s) {sorted(clashes)} name more than one arm variant; give each variant its own "
                         "label: (or none, for an automatic one)")
    return labels


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
    given_labels: tuple[tuple[Variant, str], ...] = field(default=(), compare=False)  # a space's `label:`s
    model_bits: tuple[tuple[str, tuple[str, ...]], ...] = ()  # a space's bits per model; () = every model every bits

    @cached_property
    def labels(self) -> dict[Variant, str]:
        """Each variant's short label (`short_labels`), the name tables, plots and legends use."""
        return short_labels(self.variants, dict(self.given_labels))

    def label(self, variant: Variant) -> str:
        return self.labels.get(variant) or variant_label(*variant)

    def grid(self) -> set[tuple[str, str, str, Variant, int]]:
        per_model = dict(self.model_bits)
        return {cell for cell in itertools.product(self.models, self.bits, self.ptqs, self.variants, self.seeds)
                if not per_model or cell[1] in per_model.get(cell[0], self.bits)}

    def extended(self, other: Axes) -> Axes:
        """These axes, then whatever `other` has that they lack (every model at every bits: per-model bits
        describe one space's grid, not a union)."""
        def merge(a: tuple, b: tuple) -> tuple:
            return a + tuple(x for x in b if x not in a)

        return Axes(merge(self.models, other.models), merge(self.bits, other.bits), merge(self.ptqs, other.ptqs),
                    merge(self.variants, other.variants), merge(self.seeds, other.seeds),
                    merge(self.given_labels, other.given_labels))

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


def axes_from_space(space: Mapping[str, Any], seen: Iterable[Variant] = ()) -> Axes:
    """Axes of a space.json (a `Space.to_dict()`): its grid, plain first as the sweep runs it.

    A grid point is named as its rows name it: by the parameters that differ from the arm's
    defaults (`ArmConfig.changed_params`), or as the space wrote it where rows in `seen` do
    (rows of code whose defaults differed)."""
    from harness.grid import expand_params

    seen = set(seen)

    def variant(arm: str, point: Mapping[str, Any]) -> Variant:
        written = (arm, canonical(point))
        return written if written in seen else (arm, canonical(_changed(arm, point)))

    variants = [variant(arm, point) for arm, params in space["arms"] for point in expand_params(arm, params)]
    variants = sorted(dict.fromkeys([PLAIN, *variants]), key=lambda v: v[0] != "plain")
    given = tuple((variant(arm, point), label) for arm, point, label in space.get("labels", ()))
    return Axes(models=tuple(space["models"]), bits=tuple(space["bits"]),
                ptqs=tuple(dict.fromkeys(name for name, _ in space["ptq"])), variants=tuple(variants),
                seeds=tuple(space["seeds"]), given_labels=given,
                model_bits=tuple((m, tuple(b)) for m, b in space.get("model_bits") or ()))


def _changed(arm: str, point: Mapping[str, Any]) -> dict[str, Any]:
    """The point's parameters that differ from the arm's defaults (JSON values, as a row stores them)."""
    from arnq.arms import arm_config

    return json.loads(json.dumps(arm_config(arm, **point).changed_params()))
