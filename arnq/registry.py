"""Name -> object registries for the open sets (models, datasets, PTQ methods, arms).

A registry refuses duplicate names and answers an unknown name with the valid
choices and a "Did you mean ...?" hint, so a typo in a sweep file fails before
any work starts.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class UnknownNameError(KeyError, ValueError):
    """An unknown registry name; a ValueError for callers, a KeyError for mappings."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


def suggest(name: str, choices: list[str]) -> str:
    """' Did you mean 'x'?' for the closest valid choice, or an empty string."""
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.6)
    return f" Did you mean '{close[0]}'?" if close else ""


def config_from_dict(cls: type[T], params: Mapping[str, Any]) -> T:
    """Build a dataclass config from user params; unknown keys raise with the valid ones listed."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(params) - names)
    if unknown:
        raise ValueError(f"unknown parameter(s) {unknown} for {cls.__name__}; valid: {', '.join(sorted(names))}")
    return cls(**params)


class Registry(Generic[T]):
    """A named collection of configs/handlers that raises on duplicates and helps on misses."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str, obj: T | None = None) -> Callable[[T], T] | T:
        """Register `obj` under `name`; used bare or as a decorator."""

        def add(item: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} '{name}' is already registered; pick another name")
            self._entries[name] = item
            return item

        return add(obj) if obj is not None else add

    def get(self, name: str) -> T:
        if name not in self._entries:
            raise UnknownNameError(self.unknown_message(name))
        return self._entries[name]

    def unknown_message(self, name: object) -> str:
        choices = self.names()
        hint = suggest(str(name), choices)
        return f"Unknown {self.kind} '{name}'.{hint} Valid choices: {', '.join(choices)}"

    def names(self) -> list[str]:
        return sorted(self._entries)

    def items(self) -> list[tuple[str, T]]:
        return sorted(self._entries.items())

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)
