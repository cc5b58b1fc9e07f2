"""The light base of the stored document's classes (JobState and its parts): no pydantic here.

A ``Document`` is a frozen value whose fields are its class annotations, with defaults as in
a dataclass. Its values live in the instance ``__dict__``: copying one dict is the cheapest
way to derive a state, which the run loop does on every run. Fields this release does not
know (written by a newer one) are kept apart and written back unchanged.

Validation, encoding and decoding belong to the pydantic twins in ``_state_json``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Self, TypeVar, dataclass_transform

#: Bumped only by a breaking change of the document; additive fields keep it (readers preserve
#: unknown fields) and a reader refuses a document with a higher version.
SCHEMA_VERSION = 1
#: The error type of a document from a newer release (named first when a document is refused).
NEWER_SCHEMA = "newer_schema"
#: Where an instance keeps the fields it does not know (None when there are none).
EXTRA = "_extra"

T = TypeVar("T")
_new_object = object.__new__
_set_attribute = object.__setattr__


class _Factory(Generic[T]):
    def __init__(self, make: Callable[[], T]) -> None:
        self.make = make


def field(*, default_factory: Callable[[], T]) -> T:
    """A field whose default is built afresh for each document (so none share a mutable value)."""
    return _Factory(default_factory)  # type: ignore[return-value]  # taken out by __init_subclass__


#: Every document class by name (its pydantic twin has the same name).
DOCUMENTS: dict[str, type[Document]] = {}


@dataclass_transform(kw_only_default=True, frozen_default=True, field_specifiers=(field,))
class Document:
    _fields: ClassVar[tuple[str, ...]] = ()
    _defaults: ClassVar[dict[str, Any]] = {}
    _factories: ClassVar[dict[str, Callable[[], Any]]] = {}
    #: Fields that take part in equality (bookkeeping such as a revision does not).
    _compared: ClassVar[tuple[str, ...]] = ()
    #: Fields the hash is computed from (all compared ones unless a class says otherwise).
    _hashed: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        names = tuple(inspect.get_annotations(cls))
        if not names:  # an intermediate base
            return
        cls._fields = names
        cls._defaults = {name: cls.__dict__[name] for name in names if name in cls.__dict__}
        cls._factories = {name: d.make for name, d in cls._defaults.items() if isinstance(d, _Factory)}
        for name in cls._factories:
            del cls._defaults[name]
            delattr(cls, name)
        cls._compared = tuple(name for name in names if name != "revision")
        if not cls._hashed:
            cls._hashed = cls._compared
        DOCUMENTS[cls.__name__] = cls

    @classmethod
    def _trusted(cls, values: dict[str, Any]) -> Self:
        """Built from the scheduler's own values: no validation."""
        full = cls._defaults.copy()
        for name, make in cls._factories.items():
            full[name] = make()
        full.update(values)
        full[EXTRA] = None
        return cls._of(full)

    @classmethod
    def _of(cls, values: dict[str, Any]) -> Self:
        """The document holding ``values`` (every field, and EXTRA) as they are."""
        new = _new_object(cls)
        _set_attribute(new, "__dict__", values)
        return new

    def model_copy(self, *, update: dict[str, Any] | None = None, deep: bool = False) -> Self:
        """A copy with ``update`` applied, not validated (as pydantic's); unknown names become extra fields."""
        values = self.__dict__.copy()
        if update:
            extra = dict(values[EXTRA] or {})
            for name, value in update.items():
                if name in self._fields:
                    values[name] = value
                else:
                    extra[name] = value
            values[EXTRA] = extra or None
        if deep:
            import copy

            values = copy.deepcopy(values)
        return self._of(values)

    @property
    def model_extra(self) -> dict[str, Any]:
        """The fields this release does not know, as read."""
        extra: dict[str, Any] | None = self.__dict__[EXTRA]
        return {} if extra is None else extra

    def __setattr__(self, name: str, value: Any) -> None:
        raise _frozen_error(self, name, value)

    def __delattr__(self, name: str) -> None:
        raise _frozen_error(self, name, None)

    # Unknown fields read as attributes, as on a pydantic model (hidden from mypy, which then
    # still catches a misspelt field).
    if not TYPE_CHECKING:

        def __getattr__(self, name: str) -> Any:
            extra = None if name.startswith("__") else self.__dict__.get(EXTRA)
            if extra is not None and name in extra:
                return extra[name]
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        mine, theirs = self.__dict__, other.__dict__
        if any(mine[name] != theirs[name] for name in self._compared):
            return False
        return (mine[EXTRA] or {}) == (theirs[EXTRA] or {})

    def __hash__(self) -> int:
        values = self.__dict__
        return hash(tuple([values[name] for name in self._hashed]))

    def __repr__(self) -> str:
        values = self.__dict__
        shown = [f"{name}={values[name]!r}" for name in self._fields]
        shown += [f"{name}={value!r}" for name, value in (values[EXTRA] or {}).items()]
        return f"{type(self).__name__}({', '.join(shown)})"


def _frozen_error(document: Document, name: str, value: Any) -> Exception:
    """What assigning to a field raises: the error pydantic raises for a frozen model."""
    from pydantic import ValidationError

    return ValidationError.from_exception_data(
        type(document).__name__, [{"type": "frozen_instance", "loc": (name,), "input": value}]
    )
