"""Name -> object registries for the open sets (models, datasets, PTQ methods, arms).

A registry refuses duplicate names and answers an unknown name with the valid
choices and a "Did you mean ...?" hint, so a typo in a sweep file fails before
any work starts.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
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
    try:
        hints = typing.get_type_hints(cls)
    except (NameError, TypeError):  # an annotation that cannot be resolved: leave checks to the class
        hints = {}
    for key, value in params.items():
        expected = hints.get(key)
        if expected is not None and not _matches(value, expected):
            default = next(f.default for f in dataclasses.fields(cls) if f.name == key)
            raise ValueError(f"{key}={value!r} has the wrong type for {cls.__name__}: expected {_type_name(expected)}"
                             f" (default {default!r})")
    return cls(**params)


def _matches(value: Any, expected: Any) -> bool:
    """Whether a YAML/JSON value fits a dataclass annotation (ints pass for floats, bools never for numbers)."""
    origin = typing.get_origin(expected)
    if expected is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, arg) for arg in typing.get_args(expected))
    if origin is typing.Literal:
        return value in typing.get_args(expected)
    if expected is type(None):
        return value is None
    if expected is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin in (tuple, list) or expected in (tuple, list):
        return isinstance(value, (tuple, list))
    if origin is not None:
        return isinstance(value, origin)
    return isinstance(value, expected) if isinstance(expected, type) else True


def _type_name(expected: Any) -> str:
    return getattr(expected, "__name__", None) or str(expected).replace("typing.", "")


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


class HandlerRegistry(Registry[T]):
    """Handlers, each owning a frozen config class: a name finds the handler, and so does a config's type.

    `register_handler` (a class decorator) registers an instance under `cls.name` and writes
    the name on its config class as `name_field`, so a config serialises with its handler's
    name (`to_dict`) and comes back through `config_from_dict`.
    """

    def __init__(self, kind: str, name_field: str) -> None:
        super().__init__(kind)
        self.name_field = name_field
        self._by_config: dict[type, T] = {}

    def register_handler(self, cls: type[T]) -> type[T]:
        config_cls = cls.config_cls
        if config_cls in self._by_config:
            raise ValueError(f"{self.kind} '{cls.name}' needs a config class of its own (got {config_cls.__name__})")
        handler = cls()
        self.register(cls.name, handler)
        setattr(config_cls, self.name_field, cls.name)
        self._by_config[config_cls] = handler
        return cls

    def handler(self, cfg: Any) -> T:
        """The registered handler of a config's type."""
        try:
            return self._by_config[type(cfg)]
        except KeyError:
            raise TypeError(f"{type(cfg).__name__} is not a registered {self.kind} config; register its "
                            f"{self.kind} with its register decorator") from None

    def config(self, name: str, **params: Any) -> Any:
        """The config of the handler registered as `name` from its knobs; unknown keys raise with the valid ones."""
        return config_from_dict(self.get(name).config_cls, params)

    def config_from_dict(self, data: Mapping[str, Any]) -> Any:
        """Inverse of a config's `to_dict`: the config of the handler named by data[name_field]."""
        data = dict(data)
        name = data.pop(self.name_field, None)
        if name is None:
            raise ValueError(f"a {self.kind} config needs its '{self.name_field}' (one of {', '.join(self.names())})")
        return self.config(name, **data)
