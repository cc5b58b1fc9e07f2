"""``@record`` classes behave as ``@dataclass(frozen=True, slots=True)`` classes of their fields."""

from __future__ import annotations

import copy
import dataclasses
import importlib
import inspect
import pickle
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import scheduler
from scheduler._records import _compiled_init, record

PACKAGE = Path(scheduler.__file__).parent


def _record_classes() -> list[type[Any]]:
    found = []
    for path in sorted(PACKAGE.glob("*.py")):
        if "@record" not in path.read_text():
            continue
        module = importlib.import_module(f"scheduler.{path.stem}")
        for value in vars(module).values():
            if isinstance(value, type) and value.__module__ == module.__name__ and hasattr(value, "_record_values"):
                found.append(value)
    return found


CLASSES = _record_classes()


def test_records_are_found() -> None:
    names = {cls.__name__ for cls in CLASSES}
    assert {"Job", "RetryPolicy", "SchedulerConfig", "RunRecord", "LedgerEntry", "Decision"} <= names


@record
class Sample:
    """Positional fields, a default, a factory and a field left out of repr and comparison."""

    name: str
    at: datetime
    count: int = 0
    tags: list[str] = dataclasses.field(default_factory=list)
    note: str = dataclasses.field(default="", repr=False, compare=False)


@dataclasses.dataclass(frozen=True, slots=True)
class Reference:
    """The same fields, made by ``dataclass``."""

    name: str
    at: datetime
    count: int = 0
    tags: list[str] = dataclasses.field(default_factory=list)
    note: str = dataclasses.field(default="", repr=False, compare=False)


AT = datetime(2025, 1, 1, tzinfo=UTC)


def test_a_record_behaves_as_the_dataclass_would() -> None:
    made, reference = Sample("a", AT, 2, note="x"), Reference("a", AT, 2, note="x")
    assert repr(made) == repr(reference).replace("Reference", "Sample")
    assert made == Sample("a", AT, 2, note="other")  # not compared
    assert made != Sample("a", AT, 3)
    assert made != reference  # another class is never equal
    assert Sample("a", AT).tags is not Sample("a", AT).tags  # a fresh default each time
    assert str(inspect.signature(Sample)) == str(inspect.signature(Reference))
    with pytest.raises(dataclasses.FrozenInstanceError):
        made.count = 3  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        del made.count  # type: ignore[misc]
    assert dataclasses.replace(made, count=5).count == 5
    assert Sample.__slots__ == Reference.__slots__  # type: ignore[attr-defined]
    assert Sample.__match_args__ == Reference.__match_args__  # type: ignore[attr-defined]
    with pytest.raises(TypeError):
        Sample("a")  # type: ignore[call-arg]


def test_hash_follows_the_compared_fields() -> None:
    @record
    class Point:
        """Hashable."""

        x: int
        y: int = dataclasses.field(default=0, compare=False)

    @dataclasses.dataclass(frozen=True, slots=True)
    class Twin:
        """Hashable, by dataclass."""

        x: int
        y: int = dataclasses.field(default=0, compare=False)

    assert hash(Point(1, 2)) == hash(Point(1, 3)) == hash(Twin(1, 2))


def test_post_init_runs_and_own_methods_are_kept() -> None:
    seen = []

    @record
    class Checked:
        """Checks itself."""

        value: int

        def __post_init__(self) -> None:
            seen.append(self.value)

        def __repr__(self) -> str:
            return "mine"

    assert repr(Checked(4)) == "mine"
    assert seen == [4]


def _real_records() -> list[Any]:
    from scheduler import RetryPolicy, RunRecord, RunStatus, SchedulerConfig, TriggerSource

    return [
        RetryPolicy(max_attempts=3),
        SchedulerConfig(),
        RunRecord(AT, AT, AT, False, RunStatus.SUCCESS, None, 1, 1, TriggerSource.SCHEDULED),
    ]


@pytest.mark.parametrize("instance", _real_records(), ids=lambda r: type(r).__name__)
def test_real_records_pickle_copy_and_refuse_assignment(instance: Any) -> None:
    for twin in (pickle.loads(pickle.dumps(instance)), copy.copy(instance), copy.deepcopy(instance)):
        assert twin == instance
        assert hash(twin) == hash(instance)
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(instance, dataclasses.fields(instance)[0].name, None)


def test_the_compiled_init_names_its_class() -> None:
    assert _compiled_init(Reference).__qualname__ == "Reference.__init__"
