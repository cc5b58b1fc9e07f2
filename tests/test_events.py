"""Events stay frozen dataclasses whose equality, hash and repr are what ``dataclass`` writes."""

from __future__ import annotations

import copy
import dataclasses
import inspect
import pickle
import typing
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from scheduler import events

AT = datetime(2025, 1, 1, tzinfo=UTC)
CLASSES = [getattr(events, name) for name in events.__all__]


def _sample(cls: type[events.SchedulerEvent], shift: int = 0) -> events.SchedulerEvent:
    """An instance with a value in every field (``shift`` changes each of them)."""
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        kind = hints[f.name]
        options = typing.get_args(kind) or (kind,)
        first = next(o for o in options if o is not type(None))
        if first is datetime:
            values[f.name] = AT + timedelta(seconds=shift)
        elif first is timedelta:
            values[f.name] = timedelta(seconds=1 + shift)
        elif first is bool:
            values[f.name] = bool(shift % 2)
        elif first is int:
            values[f.name] = 7 + shift
        elif first is str:
            values[f.name] = f"v{shift}"
        else:  # an enum
            values[f.name] = list(first)[shift % len(list(first))]
    return cls(**values)


def _reference(cls: type[events.SchedulerEvent]) -> type[Any]:
    """The same fields in a dataclass that writes its own eq, hash and repr."""
    fields = [(f.name, f.type) for f in dataclasses.fields(cls)]
    return dataclasses.make_dataclass(cls.__name__, fields, frozen=True, eq=True, repr=True)


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_an_event_behaves_like_the_dataclass_of_its_fields(cls: type[events.SchedulerEvent]) -> None:
    event, same, other = _sample(cls), _sample(cls), _sample(cls, shift=1)
    reference = _reference(cls)
    as_reference = reference(**{f.name: getattr(event, f.name) for f in dataclasses.fields(cls)})

    assert dataclasses.is_dataclass(event)
    assert repr(event) == repr(as_reference).replace(reference.__qualname__, cls.__qualname__, 1)
    assert event == same
    assert hash(event) == hash(same) == hash(as_reference)
    assert event != other
    assert event != as_reference  # another class is never equal, even with the same values
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.job_id = "other"  # type: ignore[misc]
    assert dataclasses.replace(event, job_id="x").job_id == "x"


def test_events_of_two_classes_with_the_same_fields_differ() -> None:
    paused = events.SchedulerPaused(job_id="j", at=AT)

    assert paused != events.SchedulerResumed(job_id="j", at=AT)
    assert paused == events.SchedulerPaused(job_id="j", at=AT)


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_an_event_pickles_and_copies(cls: type[events.SchedulerEvent]) -> None:
    event = _sample(cls)
    for twin in (pickle.loads(pickle.dumps(event)), copy.copy(event), copy.deepcopy(event)):
        assert twin == event
        assert type(twin) is cls
    parameters = inspect.signature(cls).parameters
    assert list(parameters) == [f.name for f in dataclasses.fields(cls)]
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in parameters.values())
