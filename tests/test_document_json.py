"""The stored text of a JobState is written without its pydantic twin, byte for byte as the twin writes it."""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from scheduler import JobState, RunSkipReason, RunStatus, TriggerSource
from scheduler._document import EXTRA
from scheduler._document_json import plain_values
from scheduler._state import InFlight, OpenRun
from scheduler._state_json import to_model
from scheduler._time import format_utc, format_utc_nanos

# Any text a document may hold: every code point but the lone surrogates (not valid UTF-8).
texts = st.text(st.characters(codec="utf-8"), max_size=12)
zones = st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8))])
instants = st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=zones)
counters = st.integers(min_value=0, max_value=2**63)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | texts,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
    max_leaves=8,
)


def unknown_fields(known: Iterable[str]) -> st.SearchStrategy[dict[str, Any]]:
    """Fields a newer release may have written: any name but the document's own fields."""
    names = frozenset(known)
    return st.dictionaries(texts.filter(lambda name: name not in names), json_values, max_size=3)


# The strategies below are built once, not per example: building one costs more than drawing from it.
shuffles = st.randoms(use_true_random=False)
in_flight_extras = unknown_fields(InFlight._fields)
open_run_extras = unknown_fields(OpenRun._fields)
state_extras = unknown_fields(JobState._fields)
sources = st.sampled_from(TriggerSource)
optional_instants = st.none() | instants
optional_texts = st.none() | texts
optional_statuses = st.none() | st.sampled_from(RunStatus)
optional_skip_reasons = st.none() | st.sampled_from(RunSkipReason)
optional_specs = st.none() | st.dictionaries(texts, json_values, max_size=5)
skip_counts = st.dictionaries(st.sampled_from([r.value for r in RunSkipReason]), counters)
schema_versions = st.integers(min_value=0, max_value=1)


@st.composite
def in_flights(draw: st.DrawFn) -> InFlight:
    values = {"occurrence": draw(instants), "started_at": draw(instants), "attempt": draw(counters)}
    return InFlight._of(_shuffled(draw, values, draw(in_flight_extras)))


@st.composite
def open_runs(draw: st.DrawFn) -> OpenRun:
    values = {
        "occurrence": draw(instants),
        "instance": draw(texts),
        "trigger_count": draw(counters),
        "source": draw(sources),
        "catch_up": draw(st.booleans()),
    }
    return OpenRun._of(_shuffled(draw, values, draw(open_run_extras)))


optional_in_flights = st.none() | in_flights()
open_run_lists = st.lists(open_runs(), max_size=3)


@st.composite
def states(draw: st.DrawFn) -> JobState:
    values = {
        "job_id": draw(texts),
        "trigger_count": draw(counters),
        "last_run_at": draw(optional_instants),
        "last_success_at": draw(optional_instants),
        "next_run_at": draw(optional_instants),
        "last_error": draw(optional_texts),
        "last_status": draw(optional_statuses),
        "consecutive_failures": draw(counters),
        "schedule_fingerprint": draw(optional_texts),
        "in_flight": draw(optional_in_flights),
        "schedule_spec": draw(optional_specs),
        "runs_started": draw(counters),
        "skips": draw(skip_counts),
        "last_skip_at": draw(optional_instants),
        "last_skip_reason": draw(optional_skip_reasons),
        "interrupted": draw(counters),
        "open_runs": tuple(draw(open_run_lists)),
        "schema_version": draw(schema_versions),
        "revision": draw(counters),
    }
    return JobState._of(_shuffled(draw, values, draw(state_extras)))


def _shuffled(draw: st.DrawFn, values: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """``values`` in any order (pydantic writes them in the instance's order), plus the unknown fields."""
    names = list(values)
    draw(shuffles).shuffle(names)
    shuffled = {name: values[name] for name in names}
    shuffled[EXTRA] = extra or None
    return shuffled


def _finite(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_finite(v) for v in value.values())
    if isinstance(value, list | tuple):
        return all(_finite(v) for v in value)
    return True


@settings(max_examples=600, deadline=None)
@given(states())
def test_the_text_is_the_twins_model_dump_json(state: JobState) -> None:
    text = state.to_json()
    assert text == to_model(state).model_dump_json()
    if _finite(plain_values(state)):  # inf and nan are written as null
        assert JobState.from_json(text) == state


def test_the_common_states_of_a_run() -> None:
    spec = {"kind": "interval", "every_seconds": 5e-05, "anchor": "2026-01-01T00:00:00.000000Z", "description": "é"}
    first = JobState.initial("j", next_run_at=datetime(2026, 1, 1, tzinfo=UTC), schedule_spec=spec)
    run = OpenRun.trusted(datetime(2026, 1, 1, tzinfo=UTC), "host:1", 1, TriggerSource.SCHEDULED, False)
    consumed = first.consumed(1, datetime(2026, 1, 1, 0, 0, 1, tzinfo=UTC), run)
    flying = consumed.started(InFlight.trusted(run.occurrence, run.occurrence, 1))
    loaded = JobState.from_json(flying.to_json())  # the validated form: the class's field order
    for state in (first, consumed, flying, loaded, loaded.model_copy(update={"newer_field": [1, "x"]})):
        assert state.to_json() == to_model(state).model_dump_json()
    assert '"every_seconds":0.00005' in consumed.to_json()


@settings(max_examples=300, deadline=None)
@given(st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=zones), st.booleans())
def test_format_utc_writes_rfc3339_with_microseconds(value: datetime, fold: bool) -> None:
    """Four-digit years always (years before 1000 were once written unpadded, unreadable)."""
    value = value.replace(fold=int(fold))
    utc = value.astimezone(UTC)
    expected = utc.isoformat(timespec="microseconds")[:-6]
    assert len(expected.partition("-")[0]) == 4
    for _ in range(2):  # formatted, then remembered
        assert format_utc(value) == expected + "Z"
        assert format_utc_nanos(value) == expected + "000Z"
    for fraction in (0, 7, 999_999):  # other instants of the same second: its text remembered
        other = value.replace(microsecond=fraction)
        assert format_utc(other) == other.astimezone(UTC).isoformat(timespec="microseconds")[:-6] + "Z"


def test_format_utc_keeps_few_instants() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    for seconds in range(1000):
        instant = start + timedelta(seconds=seconds, microseconds=seconds * 7919 % 10**6)
        assert format_utc(instant) == instant.isoformat(timespec="microseconds")[:-6] + "Z"
    from scheduler import _time

    assert len(_time._FORMATTED) <= _time._FORMATTED_MAX
    assert len(_time._SECONDS) <= _time._FORMATTED_MAX
