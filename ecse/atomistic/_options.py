"""The base of the typed sections of a training configuration (:mod:`ecse.atomistic.config`).

A section is a frozen dataclass whose fields are its options, each documented by the
string literal under it (as metatrain's hypers). :class:`Section` checks the type of
every option (an ``int`` given for a ``float`` option becomes a ``float``), and
:meth:`Section.from_dict` rejects unknown keys with the list of the valid ones:

>>> from dataclasses import dataclass
>>> @dataclass(frozen=True)
... class Demo(Section):
...     section = "demo"
...     lr: float = 1e-3
...     'Learning rate.'
>>> Demo.from_dict({"lr": 1}).lr
1.0
>>> Demo.from_dict({"learning_rate": 1})
Traceback (most recent call last):
...
ValueError: unknown key 'learning_rate' in section 'demo' of config; valid keys: lr
>>> Demo(lr="fast")
Traceback (most recent call last):
...
TypeError: config option 'lr' (section 'demo'): expected float, got 'fast' (str)
"""
from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Mapping, Optional, Union

__all__ = ["Section", "unknown_keys_error"]


def unknown_keys_error(unknown: list, valid: list, where: str, moved: Optional[Mapping[str, str]] = None) -> ValueError:
    """The ``ValueError`` for ``unknown`` keys of a mapping whose valid keys are ``valid``;
    ``moved`` (``{old key: new place}``) says where a key of the flat form went."""
    plural = "s" if len(unknown) > 1 else ""
    names = ", ".join(repr(k) for k in unknown)
    hints = [f"{k!r} is now {moved[k]}" for k in unknown if moved and k in moved]
    return ValueError(f"unknown key{plural} {names} in {where}; valid keys: {', '.join(valid)}"
                      + (f" ({'; '.join(hints)})" if hints else ""))


@dataclass(frozen=True)
class Section:
    """Base of the option sections: type-checked, immutable, built from a mapping with
    :meth:`from_dict` and written back with :meth:`to_dict`."""

    #: the section's key in a configuration (``data``, ``model``, ...)
    section: ClassVar[str] = "options"

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            value, tp = getattr(self, f.name), hints[f.name]
            if not _matches(value, tp):
                raise TypeError(f"config option {f.name!r} (section {self.section!r}): expected {_describe(tp)}, "
                                f"got {value!r} ({type(value).__name__})")
            if isinstance(value, int) and not isinstance(value, bool) and float in _members(tp) \
                    and int not in _members(tp):
                object.__setattr__(self, f.name, float(value))
            elif isinstance(value, (list, tuple, dict)):
                object.__setattr__(self, f.name, type(value)(value))  # a copy: the caller's stays the caller's
        self.check()

    def check(self) -> None:
        """Check the values together (subclasses; raise ``ValueError``)."""

    def positive(self, *names: str, minimum: float = 1) -> None:
        """Raise ``ValueError`` when one of the options ``names`` is below ``minimum``."""
        for key in names:
            value = getattr(self, key)
            if value is not None and value < minimum:
                bound = "positive" if minimum == 1 else f">= {minimum:g}"
                raise ValueError(f"config option {key!r} (section {self.section!r}) must be {bound}, got {value}")

    @classmethod
    def keys(cls) -> list[str]:
        """The valid keys, in the order of definition."""
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_dict(cls, options: Any, source: str = "config", moved: Optional[Mapping[str, str]] = None):
        """Build the section from a mapping (``None``: all defaults; an instance is
        returned as is), naming unknown keys and the valid ones in the error."""
        if isinstance(options, cls):
            return options
        if options is None:
            options = {}
        if not isinstance(options, Mapping):
            raise TypeError(f"section {cls.section!r} of {source} must be a mapping of options, "
                            f"got {options!r} ({type(options).__name__})")
        unknown = [k for k in options if k not in cls.keys()]
        if unknown:
            raise unknown_keys_error(unknown, cls.keys(), f"section {cls.section!r} of {source}", moved)
        return cls(**options)

    def to_dict(self) -> dict[str, Any]:
        """The options as plain Python values (for checkpoints and YAML)."""
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}


def _plain(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _members(tp: Any) -> tuple:
    return typing.get_args(tp) if typing.get_origin(tp) is Union else (tp,)


def _matches(value: Any, tp: Any) -> bool:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return True
    if origin is Union:
        return any(_matches(value, a) for a in args)
    if origin is Literal:
        return value in args
    if tp is type(None):
        return value is None
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin is list or tp is list:
        return isinstance(value, (list, tuple)) and all(_matches(v, args[0]) for v in value) if args \
            else isinstance(value, (list, tuple))
    if origin is dict or tp is dict:
        return isinstance(value, Mapping) and (not args or all(
            _matches(k, args[0]) and _matches(v, args[1]) for k, v in value.items()))
    return isinstance(value, origin or tp)


def _describe(tp: Any) -> str:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Union:
        return " or ".join(_describe(a) for a in args)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (list, dict):
        return f"{origin.__name__} of " + " to ".join(_describe(a) for a in args)
    return "null" if tp is type(None) else getattr(tp, "__name__", str(tp))
