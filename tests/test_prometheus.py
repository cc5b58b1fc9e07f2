"""PrometheusObserver: event -> metric mapping, shared registries, and a real scheduler run."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from scheduler import (
    InMemoryStateStore,
    Interval,
    Job,
    RunSkipReason,
    RunStatus,
    Scheduler,
    SchedulerStopReason,
    StateLoadSource,
    StoreOperation,
    TaskContext,
    TriggerSource,
)
from scheduler.events import (
    ExecutionGuardAcquired,
    ExecutionGuardLost,
    RunCompleted,
    RunSkipped,
    RunsMissed,
    RunStarted,
    SchedulerStopped,
    StateLoaded,
    StoreDegraded,
    StoreRecovered,
    TriggerEmitted,
)
from scheduler.prometheus import PrometheusObserver
from scheduler.testing import FakeClock

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def test_import_scheduler_does_not_import_prometheus_client() -> None:
    import subprocess
    import sys

    code = "import sys, scheduler; scheduler.SqliteStateStore; print('prometheus_client' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_events_map_to_metrics() -> None:
    registry = CollectorRegistry()
    obs = PrometheusObserver(registry)
    obs.on_event(StateLoaded(job_id="j", at=T0, source=StateLoadSource.NEW, trigger_count=0, next_run_at=T0))
    assert value(registry, "scheduler_runs_total", job_id="j", status="failed") == 0
    assert value(registry, "scheduler_running", job_id="j") == 1
    assert value(registry, "scheduler_next_run_timestamp_seconds", job_id="j") == T0.timestamp()
    late = T0 + timedelta(milliseconds=30)
    obs.on_event(
        TriggerEmitted(
            job_id="j", at=late, scheduled_at=T0, catch_up=False, trigger_count=1, source=TriggerSource.SCHEDULED
        )
    )
    obs.on_event(RunStarted(job_id="j", at=late, scheduled_at=T0, catch_up=False, trigger_count=1, attempt=1))
    done = late + timedelta(seconds=2)
    obs.on_event(
        RunCompleted(
            job_id="j",
            at=done,
            scheduled_at=T0,
            catch_up=False,
            trigger_count=1,
            status=RunStatus.FAILED,
            error="x",
            attempts=1,
        )
    )
    obs.on_event(
        RunSkipped(job_id="j", at=done, scheduled_at=T0, catch_up=False, trigger_count=2, reason=RunSkipReason.OVERLAP)
    )
    obs.on_event(
        RunsMissed(
            job_id="j", at=done, count=500, first_scheduled_at=T0, last_scheduled_at=done, reason=RunSkipReason.MISSED
        )
    )
    assert value(registry, "scheduler_runs_total", job_id="j", status="failed") == 1
    assert value(registry, "scheduler_runs_total", job_id="j", status="success") == 0
    assert value(registry, "scheduler_skips_total", job_id="j", reason="overlap") == 1
    assert value(registry, "scheduler_skips_total", job_id="j", reason="missed") == 500
    assert value(registry, "scheduler_run_duration_seconds_sum", job_id="j") == pytest.approx(2.0)
    assert value(registry, "scheduler_trigger_lateness_seconds_sum", job_id="j") == pytest.approx(0.03)
    assert value(registry, "scheduler_trigger_lateness_seconds_bucket", job_id="j", le="0.05") == 1

    obs.on_event(StoreDegraded(job_id="j", at=done, operation=StoreOperation.SAVE, error="down"))
    assert value(registry, "scheduler_store_degraded", job_id="j") == 1
    obs.on_event(StoreRecovered(job_id="j", at=done, written_back=1))
    assert value(registry, "scheduler_store_degraded", job_id="j") == 0

    guard = {"resource_id": "j", "scope": "occurrence", "scheduled_at": T0}
    obs.on_event(ExecutionGuardLost(job_id="j", at=done, **guard))  # type: ignore[arg-type]
    assert value(registry, "scheduler_lease_lost", job_id="j") == 1
    assert value(registry, "scheduler_leases_lost_total", job_id="j") == 1
    obs.on_event(ExecutionGuardAcquired(job_id="j", at=done, **guard))  # type: ignore[arg-type]
    assert value(registry, "scheduler_lease_lost", job_id="j") == 0

    obs.on_event(SchedulerStopped(job_id="j", at=done, reason=SchedulerStopReason.TERMINAL, trigger_count=2))
    assert value(registry, "scheduler_running", job_id="j") == 0
    assert value(registry, "scheduler_next_run_timestamp_seconds", job_id="j") == 0


def test_two_observers_share_one_registry() -> None:
    registry = CollectorRegistry()
    a, b = PrometheusObserver(registry), PrometheusObserver(registry)
    for obs, job in ((a, "a"), (b, "b")):
        obs.on_event(
            RunSkipped(job_id=job, at=T0, scheduled_at=T0, catch_up=False, trigger_count=1, reason=RunSkipReason.PAUSED)
        )
    assert value(registry, "scheduler_skips_total", job_id="a", reason="paused") == 1
    assert value(registry, "scheduler_skips_total", job_id="b", reason="paused") == 1
    assert b"scheduler_skips_total" in generate_latest(registry)


def test_default_registry_is_the_global_one() -> None:
    from prometheus_client import REGISTRY

    assert PrometheusObserver().registry is REGISTRY


def test_set_next_run() -> None:
    registry = CollectorRegistry()
    obs = PrometheusObserver(registry)
    obs.set_next_run("j", T0)
    assert value(registry, "scheduler_next_run_timestamp_seconds", job_id="j") == T0.timestamp()
    obs.set_next_run("j", None)
    assert value(registry, "scheduler_next_run_timestamp_seconds", job_id="j") == 0


async def test_counts_from_a_real_scheduler_run() -> None:
    registry = CollectorRegistry()
    calls = 0

    async def task(ctx: TaskContext) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise RuntimeError("second run fails")

    job = Job("metered", Interval(timedelta(seconds=10)), task, max_runs=4)
    scheduler = Scheduler(store=InMemoryStateStore(), observer=PrometheusObserver(registry), clock=FakeClock(T0))
    report = await scheduler.run(job)
    assert report.stop_reason is SchedulerStopReason.TERMINAL
    assert value(registry, "scheduler_runs_total", job_id="metered", status="success") == 3
    assert value(registry, "scheduler_runs_total", job_id="metered", status="failed") == 1
    assert value(registry, "scheduler_run_duration_seconds_count", job_id="metered") == 4
    assert value(registry, "scheduler_trigger_lateness_seconds_count", job_id="metered") == 4
    assert value(registry, "scheduler_running", job_id="metered") == 0


def test_dead_mans_switch_gauges_conflicts_and_degraded_time() -> None:
    """Last success/run and consecutive failures follow runs (seeded from the state); conflicts,
    store errors (a ledger write among them), degraded time and guard errors are counted."""
    from scheduler import JobState
    from scheduler.events import ExecutionGuardRenewFailed, StateConflict

    registry = CollectorRegistry()
    obs = PrometheusObserver(registry)
    obs.seed(JobState(job_id="j", last_success_at=T0, last_run_at=T0, consecutive_failures=2))
    assert value(registry, "scheduler_last_success_timestamp_seconds", job_id="j") == T0.timestamp()
    assert value(registry, "scheduler_consecutive_failures", job_id="j") == 2
    at = T0 + timedelta(hours=1)
    run = {"job_id": "j", "scheduled_at": at, "catch_up": False, "trigger_count": 3}
    obs.on_event(RunStarted(at=at, attempt=1, **run))
    assert value(registry, "scheduler_last_run_timestamp_seconds", job_id="j") == at.timestamp()
    obs.on_event(RunCompleted(at=at, status=RunStatus.TIMED_OUT, error="t", attempts=1, **run))
    assert value(registry, "scheduler_consecutive_failures", job_id="j") == 3
    done = at + timedelta(seconds=5)
    obs.on_event(RunCompleted(at=done, status=RunStatus.SUCCESS, error=None, attempts=1, **run))
    assert value(registry, "scheduler_consecutive_failures", job_id="j") == 0
    assert value(registry, "scheduler_last_success_timestamp_seconds", job_id="j") == done.timestamp()
    obs.on_event(StateConflict(job_id="j", at=at, during="consume", trigger_count=4, next_run_at=None))
    assert value(registry, "scheduler_state_conflicts_total", job_id="j", during="consume") == 1
    obs.on_event(StoreDegraded(job_id="j", at=at, operation=StoreOperation.SAVE, error="down"))
    obs.on_event(StoreRecovered(job_id="j", at=at + timedelta(seconds=30), written_back=1))
    assert value(registry, "scheduler_store_degraded_seconds_total", job_id="j") == 30
    assert value(registry, "scheduler_store_errors_total", job_id="j", operation="save") == 1
    guard = {"job_id": "j", "at": at, "resource_id": "j", "scope": "occurrence", "scheduled_at": at}
    obs.on_event(ExecutionGuardRenewFailed(error="renew timed out after 1s", **guard))  # type: ignore[arg-type]
    assert value(registry, "scheduler_guard_errors_total", job_id="j", call="renew") == 1
    assert value(registry, "scheduler_guard_timeouts_total", job_id="j") == 1
