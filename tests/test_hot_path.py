"""The run loop's shortcuts give what the general code gives: same records, contexts, events, logs."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import pytest

from scheduler import InMemoryStateStore, Interval, Job, RetryPolicy, Scheduler, SchedulerConfig, TaskContext
from scheduler._slots import slot_filler
from scheduler.testing import FakeClock, RecordingObserver


@dataclass(frozen=True, slots=True)
class Awkward:
    instance: int
    cls: str
    set_instance: float = 1.0
    extra: list[int] = field(default_factory=list)


def test_slot_filler_builds_what_the_constructor_builds_whatever_the_field_names() -> None:
    build = slot_filler(Awkward)

    built = build(1, "a", 2.0, [3])

    assert built == Awkward(1, "a", 2.0, [3])
    assert type(built) is Awkward
    with pytest.raises(AttributeError):
        built.instance = 2  # type: ignore[misc]  # still frozen


def test_slot_filler_refuses_a_class_without_slots() -> None:
    @dataclass(frozen=True)
    class Plain:
        x: int

    with pytest.raises(TypeError, match="Plain is not a slotted dataclass"):
        slot_filler(Plain)


class Failure(Exception):
    returncode = 3


OUTCOMES: dict[str, BaseException | None] = {
    "success": None,
    "failure with an exit code": Failure("exit 3"),
    "a TimeoutError of the task's own": TimeoutError("slow backend"),
}


async def _run(clock: FakeClock, raised: BaseException | None, one_attempt_policy: bool) -> dict[str, Any]:
    """One run, through the plain path (no retry policy) or the general one (a policy of one attempt)."""
    contexts: list[TaskContext] = []

    async def task(ctx: TaskContext) -> None:
        contexts.append(ctx)
        if raised is not None:
            raise raised

    store, observer = InMemoryStateStore(), RecordingObserver()
    retry = RetryPolicy(max_attempts=1) if one_attempt_policy else None
    job = Job("same", Interval(5), task, max_runs=2, retry=retry)
    report = await Scheduler(SchedulerConfig(), store=store, clock=clock, observer=observer).run(job)
    ledger = await store.history("same")
    return {
        "records": report.history,
        "contexts": [c.run for c in contexts],
        "events": [type(e).__name__ for e in observer.events],
        "ledger": [(e.fate, e.error, e.exit_code, e.attempts) for e in ledger],
        "state": report.state.model_dump(exclude={"revision"}),
    }


@pytest.mark.parametrize("raised", list(OUTCOMES.values()), ids=list(OUTCOMES))
async def test_a_plain_run_matches_the_general_path(raised: BaseException | None, caplog: Any) -> None:
    caplog.set_level(logging.ERROR, logger="scheduler")
    plain = await _run(FakeClock(), raised, one_attempt_policy=False)
    plain_logs = [r.getMessage() for r in caplog.records]
    caplog.clear()
    general = await _run(FakeClock(), raised, one_attempt_policy=True)

    assert plain == general
    assert plain_logs == [r.getMessage() for r in caplog.records]
