"""JobState without pydantic on the run path, and with pydantic's behaviour wherever it is used."""

from __future__ import annotations

import copy
import json
import pickle
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import BaseModel, TypeAdapter, ValidationError

from scheduler import JobState, RunSkipReason, RunStatus, TriggerSource
from scheduler._state import SCHEMA_VERSION, InFlight, OpenRun
from scheduler._state_json import model_of

T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)

CORE_RUN = textwrap.dedent(
    """
    import asyncio, sys
    from scheduler import Scheduler, Job, Interval, Cron
    assert "pydantic" not in sys.modules, "importing the core API"
    from scheduler import InMemoryStateStore
    from scheduler.testing import FakeClock

    async def task(ctx):
        return None

    async def main():
        store = InMemoryStateStore()
        report = await Scheduler(store=store, clock=FakeClock()).run(Job("j", Interval(3600), task, max_runs=3))
        assert report.runs == 3, report
        assert len(await store.history("j")) == 3  # the run ledger is on by default
        print("pydantic" in sys.modules)

    asyncio.run(main())
    """
)


def test_the_core_api_and_an_in_memory_run_never_import_pydantic() -> None:
    done = subprocess.run([sys.executable, "-c", CORE_RUN], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


# -- the constructor and model_validate validate as a stored document is ------------------------


@pytest.mark.parametrize("field", ["trigger_count", "consecutive_failures", "runs_started", "interrupted", "revision"])
def test_a_negative_counter_is_refused_by_every_entry_point(field: str) -> None:
    for build in (
        lambda: JobState(job_id="v", **{field: -1}),
        lambda: JobState.model_validate({"job_id": "v", field: -1}),
        lambda: JobState.model_validate_json(json.dumps({"job_id": "v", field: -1})),
    ):
        with pytest.raises(ValidationError) as caught:
            build()
        assert caught.value.title == "JobState"
        assert [(e["type"], e["loc"]) for e in caught.value.errors()] == [("greater_than_equal", (field,))]


def test_a_newer_schema_is_refused_by_every_entry_point() -> None:
    for build in (
        lambda: JobState(job_id="v", schema_version=SCHEMA_VERSION + 1),
        lambda: JobState.model_validate({"job_id": "v", "schema_version": SCHEMA_VERSION + 1}),
    ):
        with pytest.raises(ValidationError, match="newer than") as caught:
            build()
        assert caught.value.errors()[0]["type"] == "newer_schema"


def test_wrong_types_and_missing_fields_name_their_place() -> None:
    with pytest.raises(ValidationError) as caught:
        JobState.model_validate({"open_runs": [{"instance": 1}], "last_status": "nope"})
    places = {(e["type"], e["loc"]) for e in caught.value.errors()}
    assert places == {
        ("missing", ("job_id",)),
        ("enum", ("last_status",)),
        ("missing", ("open_runs", 0, "occurrence")),
        ("string_type", ("open_runs", 0, "instance")),
    }


def test_values_are_converted_as_in_a_document() -> None:
    state = JobState(
        job_id="c",
        next_run_at="2025-01-01T12:00:00.123456789Z",  # type: ignore[arg-type]  # 9 fractional digits
        last_run_at=datetime(2025, 1, 1, 12),  # naive: UTC
        last_success_at=datetime(2025, 1, 1, 14, tzinfo=timezone(timedelta(hours=2))),
        last_status="failed",  # type: ignore[arg-type]
        last_skip_reason="overlap",  # type: ignore[arg-type]
        open_runs=[{"occurrence": "2025-01-01T12:00:00Z", "instance": "h:1", "source": "manual"}],  # type: ignore[list-item]
    )
    assert state.next_run_at == T0 + timedelta(microseconds=123456)
    assert state.last_run_at == T0
    assert state.last_run_at.tzinfo is UTC
    assert state.last_success_at == T0
    assert state.last_success_at.tzinfo is UTC
    assert state.last_status is RunStatus.FAILED
    assert state.last_skip_reason is RunSkipReason.OVERLAP
    assert state.open_runs == (OpenRun.trusted(T0, "h:1", 0, TriggerSource.MANUAL, False),)
    assert isinstance(state.open_runs, tuple)
    assert type(state.open_runs[0]) is OpenRun


def test_parts_given_as_objects_are_kept() -> None:
    flight = InFlight(occurrence=T0, started_at=T0, attempt=2)
    state = JobState(job_id="p", in_flight=flight, open_runs=(OpenRun(occurrence=T0, instance="h:1"),))
    assert state.in_flight == flight
    assert type(state.in_flight) is InFlight
    assert JobState.model_validate(state) is state


# -- unknown fields, equality, immutability ---------------------------------------------------------


def test_unknown_fields_round_trip_through_every_copy() -> None:
    text = json.dumps({"job_id": "u", "trigger_count": 2, "later": {"a": [1, 2.5, None]}, "z": "é"})
    state = JobState.model_validate_json(text)
    assert state.model_extra == {"later": {"a": [1, 2.5, None]}, "z": "é"}
    assert state.later == {"a": [1, 2.5, None]}  # type: ignore[attr-defined]  # readable as on a pydantic model
    derived = state.consumed(3, T0).with_revision(4).model_copy(update={"last_error": "x"})
    assert json.loads(derived.to_json())["later"] == {"a": [1, 2.5, None]}
    assert JobState.from_json(derived.to_json()).model_extra == state.model_extra
    assert JobState(job_id="u", extra_kw=1).model_extra == {"extra_kw": 1}  # type: ignore[call-arg]


def test_equality_ignores_the_revision_and_hash_follows_it() -> None:
    state = JobState(job_id="e", trigger_count=1)
    assert state.with_revision(9) == state
    assert hash(state.with_revision(9)) == hash(state)
    assert state != state.consumed(2, None)
    assert state != JobState.model_validate({"job_id": "e", "trigger_count": 1, "more": 1})
    assert OpenRun(occurrence=T0, instance="a") != InFlight(occurrence=T0, started_at=T0)


def test_a_state_is_frozen() -> None:
    state = JobState(job_id="f")
    with pytest.raises(ValidationError, match="frozen"):
        state.trigger_count = 3  # type: ignore[misc]
    with pytest.raises(ValidationError, match="frozen"):
        del state.job_id  # type: ignore[misc]
    assert state.trigger_count == 0


def test_copies_and_pickles_are_equal() -> None:
    state = JobState.model_validate(
        {"job_id": "k", "trigger_count": 1, "in_flight": {"occurrence": T0, "started_at": T0}, "x": [1]}
    ).with_revision(3)
    for twin in (pickle.loads(pickle.dumps(state)), copy.copy(state), copy.deepcopy(state)):
        assert twin == state
        assert twin.revision == 3
        assert twin.model_extra == {"x": [1]}


def test_the_light_classes_mirror_their_models() -> None:
    """Same fields, in the same order, with the same defaults as the pydantic models."""
    for light in (JobState, InFlight, OpenRun):
        assert light._fields == tuple(model_of(light).model_fields) == tuple(light.model_fields)
        for name, info in light.model_fields.items():
            if name in light._factories:
                assert light._factories[name]() == info.get_default(call_default_factory=True)
            elif name in light._defaults:
                assert light._defaults[name] == info.get_default()
            else:
                assert info.is_required(), name


def test_repr_names_every_field() -> None:
    shown = repr(JobState.model_validate({"job_id": "r", "later": 1}))
    assert shown.startswith("JobState(job_id='r', trigger_count=0,")
    assert shown.endswith("revision=0, later=1)")


# -- inside the user's own pydantic models ----------------------------------------------------------


class Snapshot(BaseModel):
    taken_at: datetime
    state: JobState
    parts: list[OpenRun] = []


def test_a_state_is_a_field_of_a_user_model() -> None:
    state = JobState(job_id="m", trigger_count=2, next_run_at=T0, open_runs=(OpenRun(occurrence=T0, instance="h"),))
    snap = Snapshot(taken_at=T0, state=state)
    assert snap.state is state
    dumped = json.loads(snap.model_dump_json())
    assert dumped["state"] == json.loads(state.to_json())
    assert snap.model_dump()["state"] == state.model_dump()
    again = Snapshot.model_validate_json(snap.model_dump_json())
    assert again.state == state
    assert type(again.state) is JobState
    assert type(again.state.open_runs[0]) is OpenRun
    from_dict = Snapshot.model_validate(
        {"taken_at": T0, "state": {"job_id": "m"}, "parts": [{"occurrence": T0, "instance": "i"}]}
    )
    assert from_dict.state == JobState(job_id="m")
    assert from_dict.parts == [OpenRun(occurrence=T0, instance="i")]
    with pytest.raises(ValidationError, match="greater than or equal"):
        Snapshot.model_validate({"taken_at": T0, "state": {"job_id": "m", "trigger_count": -1}})
    assert "JobState" in json.dumps(Snapshot.model_json_schema())


def test_a_type_adapter_reads_and_writes_states() -> None:
    adapter = TypeAdapter(list[JobState])
    states = adapter.validate_json('[{"job_id": "a"}, {"job_id": "b", "trigger_count": 1}]')
    assert states == [JobState(job_id="a"), JobState(job_id="b", trigger_count=1)]
    assert json.loads(adapter.dump_json(states)) == [json.loads(s.to_json()) for s in states]
