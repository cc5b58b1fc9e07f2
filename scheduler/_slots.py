"""Positional constructors for frozen, slotted dataclasses, for values already known valid.

A frozen dataclass's ``__init__`` sets each field through ``object.__setattr__`` by name.
The run loop builds a few such records per run from values it computed itself, so it fills
the slots through their descriptors instead (the same object, about half the cost). No
``__post_init__`` runs: use it only where the class has none, or its checks cannot fail.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields
from typing import Any, TypeVar

T = TypeVar("T")


def slot_filler(cls: type[T]) -> Callable[..., T]:
    """``build(*values)``: an instance of ``cls`` with every field, in declaration order."""
    names = [f.name for f in fields(cls)]  # type: ignore[arg-type]
    if tuple(names) != getattr(cls, "__slots__", None):
        raise TypeError(f"{cls.__name__} is not a slotted dataclass whose slots are its fields")
    # One generated function per class, each slot set by its own descriptor: no loop, no
    # by-name lookup (the same technique ``dataclasses`` uses for ``__init__``).
    # Dunder names for everything but the parameters: a field may be called anything else.
    scope: dict[str, Any] = {"__object_new__": object.__new__, "__cls__": cls}
    scope.update({f"__set_{name}__": cls.__dict__[name].__set__ for name in names})
    body = "".join(f"    __set_{name}__(__built__, {name})\n" for name in names)
    source = f"def build({', '.join(names)}):\n    __built__ = __object_new__(__cls__)\n{body}    return __built__\n"
    exec(source, scope)  # the source is built from the field names only
    build: Callable[..., T] = scope["build"]
    build.__qualname__ = f"slot_filler({cls.__name__})"
    return build
