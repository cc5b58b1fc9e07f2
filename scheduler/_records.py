"""``@record``: a frozen, slotted dataclass, made in about a third of the import time.

``dataclass(frozen=True, slots=True)`` compiles six methods per class (``__init__``,
``__repr__``, ``__eq__``, ``__hash__``, ``__setattr__``, ``__delattr__``); with a few dozen such
classes that was most of the time ``from scheduler import Scheduler`` took. Here ``dataclass``
only collects the fields and makes the slots; ``__init__`` is compiled (one small function,
each field set through its slot's descriptor) and the other methods are shared functions that
behave as the generated ones (fields in order, equal only to the same class). A method the
class writes itself is kept.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import MISSING, Field, FrozenInstanceError, dataclass, field, fields
from operator import attrgetter
from typing import Any, TypeVar, dataclass_transform

T = TypeVar("T")


class _Factory:
    """The default of a field with a default factory (shown as dataclass shows it)."""

    def __repr__(self) -> str:
        return "<factory>"


_FACTORY = _Factory()


@dataclass_transform(frozen_default=True, field_specifiers=(field, Field))
def record(cls: type[T]) -> type[T]:
    made: Any = dataclass(slots=True, init=False, repr=False, eq=False)(cls)
    every = fields(made)
    if any(f.kw_only or not f.init for f in every):
        raise TypeError(f"{cls.__name__}: @record takes plain fields (use @dataclass)")
    # What the shared methods read, per class (as the generated ones would).
    made._record_values = _getter([f.name for f in every])
    made._record_compared = _getter([f.name for f in every if f.compare])
    hashed = [f.name for f in every if (f.compare if f.hash is None else f.hash)]
    made._record_hashed = _getter(hashed)
    made._record_shown = tuple(f.name for f in every if f.repr)
    if "__init__" not in cls.__dict__:  # the class's own methods win, as with dataclass
        made.__init__ = _compiled_init(made)
    shared = {
        "__repr__": _repr,
        "__eq__": _eq,
        "__hash__": _hash,
        "__setattr__": _setattr,
        "__delattr__": _delattr,
        "__getstate__": _getstate,
        "__setstate__": _setstate,
    }
    for name, method in shared.items():
        if name not in cls.__dict__:
            setattr(made, name, method)
    built: type[T] = made
    return built


def _getter(names: list[str]) -> staticmethod[[Any], tuple[Any, ...]]:
    """``self -> (self.a, self.b, ...)``, a tuple whatever the count (kept on the class)."""
    if len(names) == 1:
        one = attrgetter(names[0])
        return staticmethod(lambda self: (one(self),))
    return staticmethod(attrgetter(*names) if names else lambda self: ())


def _compiled_init(cls: type[Any]) -> Any:
    """The ``__init__`` of a frozen dataclass of ``cls``'s fields (defaults, factories, ``__post_init__``)."""
    # Dunder names for everything but the parameters: a field may be called anything else.
    scope: dict[str, Any] = {"__factory__": _FACTORY}
    params, body = [], []
    for i, f in enumerate(fields(cls)):
        scope[f"__set{i}__"] = getattr(cls, f.name).__set__
        if f.default_factory is not MISSING:
            scope[f"__make{i}__"] = f.default_factory
            params.append(f"{f.name}=__factory__")
            body.append(f"    if {f.name} is __factory__:\n        {f.name} = __make{i}__()\n")
        elif f.default is not MISSING:
            scope[f"__default{i}__"] = f.default
            params.append(f"{f.name}=__default{i}__")
        else:
            params.append(f.name)
        body.append(f"    __set{i}__(__self__, {f.name})\n")
    if hasattr(cls, "__post_init__"):
        body.append("    __self__.__post_init__()\n")
    source = f"def __init__({', '.join(['__self__', *params])}):\n{''.join(body) or '    pass'}\n"
    exec(source, scope)  # built from the field names only
    init = scope["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__annotations__ = {f.name: f.type for f in fields(cls)} | {"return": None}
    return init


def _repr(self: Any) -> str:
    shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._record_shown)
    return f"{type(self).__qualname__}({shown})"


def _eq(self: Any, other: Any) -> Any:
    if other.__class__ is not self.__class__:
        return NotImplemented
    return self._record_compared(self) == self._record_compared(other)


def _hash(self: Any) -> int:
    hashed: Callable[[Any], tuple[Any, ...]] = self._record_hashed
    return hash(hashed(self))


def _setattr(self: Any, name: str, value: Any) -> None:
    raise FrozenInstanceError(f"cannot assign to field {name!r}")


def _delattr(self: Any, name: str) -> None:
    raise FrozenInstanceError(f"cannot delete field {name!r}")


def _getstate(self: Any) -> tuple[Any, ...]:
    values: tuple[Any, ...] = self._record_values(self)
    return values


def _setstate(self: Any, state: tuple[Any, ...]) -> None:
    for f, value in zip(fields(self), state, strict=True):
        object.__setattr__(self, f.name, value)
