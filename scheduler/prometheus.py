"""Prometheus metrics for the scheduler (needs the ``prometheus`` extra: ``prometheus-client``).

``PrometheusObserver`` turns events into metrics, all labelled by ``job_id``::

    scheduler_runs_total{job_id,status}             runs completed, by RunStatus
    scheduler_skips_total{job_id,reason}            consumed occurrences that did not run
    scheduler_run_duration_seconds{job_id}          histogram: start to finish of a run
    scheduler_trigger_lateness_seconds{job_id}      histogram: trigger time minus occurrence
    scheduler_next_run_timestamp_seconds{job_id}    Unix time of the next occurrence (0: none)
    scheduler_store_degraded{job_id}                1 while the resilient store runs from memory
    scheduler_lease_lost{job_id}                    1 after a lost lease, until a lease is acquired
    scheduler_leases_lost_total{job_id}             leases lost
    scheduler_running{job_id}                       1 while the scheduler runs this job
    scheduler_last_success_timestamp_seconds{job_id}  Unix time the last successful run finished
    scheduler_last_run_timestamp_seconds{job_id}    Unix time the last run started
    scheduler_consecutive_failures{job_id}          runs that did not succeed since the last success
    scheduler_state_conflicts_total{job_id,during}  saves refused because another process wrote first
    scheduler_store_errors_total{job_id,operation}  store calls that failed (operation "ledger":
                                                    a ledger write that failed)
    scheduler_store_degraded_seconds_total{job_id}  time spent running from the in-memory mirror
    scheduler_guard_errors_total{job_id,call}       guard calls that failed (acquire, renew, release)
    scheduler_guard_timeouts_total{job_id}          guard calls that ran out of time

Seed the ``last_*`` gauges and the failure count from the stored state with
:meth:`PrometheusObserver.seed` (the CLI does), so a restart does not reset them to 0.

This module is not imported by ``import scheduler``.
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass
from datetime import datetime

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

from ._enums import RunSkipReason, RunStatus, SchedulerStopReason
from ._state import JobState
from .events import (
    ExecutionGuardAcquired,
    ExecutionGuardLost,
    ExecutionGuardReleaseFailed,
    ExecutionGuardRenewFailed,
    RunCompleted,
    RunSkipped,
    RunsMissed,
    RunStarted,
    SchedulerEvent,
    SchedulerStopped,
    StateConflict,
    StateLoaded,
    StoreDegraded,
    StoreRecovered,
    TriggerEmitted,
)

__all__ = ["PrometheusObserver"]

#: Run durations span milliseconds (a health ping) to hours (a backup).
DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600)
#: Lateness is normally milliseconds; seconds-to-hours after downtime or a busy host.
LATENESS_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 30, 60, 300, 3600)


@dataclass(frozen=True, slots=True)
class _Metrics:
    runs: Counter
    skips: Counter
    duration: Histogram
    lateness: Histogram
    next_run: Gauge
    degraded: Gauge
    lease_lost: Gauge
    leases_lost: Counter
    running: Gauge
    last_success: Gauge
    last_run: Gauge
    failures: Gauge
    conflicts: Counter
    store_errors: Counter
    degraded_seconds: Counter
    guard_errors: Counter
    guard_timeouts: Counter


# Metrics are registered once per registry: a second observer on the same registry (several
# jobs in one process) shares them instead of failing with "Duplicated timeseries".
_BY_REGISTRY: weakref.WeakKeyDictionary[CollectorRegistry, _Metrics] = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def _metrics_for(registry: CollectorRegistry) -> _Metrics:
    with _LOCK:
        found = _BY_REGISTRY.get(registry)
        if found is None:
            job = ["job_id"]
            found = _Metrics(
                runs=Counter("scheduler_runs", "Runs completed, by status.", [*job, "status"], registry=registry),
                skips=Counter(
                    "scheduler_skips",
                    "Consumed occurrences that did not run, by reason.",
                    [*job, "reason"],
                    registry=registry,
                ),
                duration=Histogram(
                    "scheduler_run_duration_seconds",
                    "Run duration (all attempts), start to finish.",
                    job,
                    buckets=DURATION_BUCKETS,
                    registry=registry,
                ),
                lateness=Histogram(
                    "scheduler_trigger_lateness_seconds",
                    "Delay between an occurrence and its trigger.",
                    job,
                    buckets=LATENESS_BUCKETS,
                    registry=registry,
                ),
                next_run=Gauge(
                    "scheduler_next_run_timestamp_seconds",
                    "Unix time of the next occurrence (0: none).",
                    job,
                    registry=registry,
                ),
                degraded=Gauge(
                    "scheduler_store_degraded",
                    "1 while the state store runs from its in-memory mirror.",
                    job,
                    registry=registry,
                ),
                lease_lost=Gauge(
                    "scheduler_lease_lost",
                    "1 after an execution lease was lost, until one is acquired.",
                    job,
                    registry=registry,
                ),
                leases_lost=Counter("scheduler_leases_lost", "Execution leases lost.", job, registry=registry),
                running=Gauge(
                    "scheduler_running", "1 while the scheduler is running this job.", job, registry=registry
                ),
                last_success=Gauge(
                    "scheduler_last_success_timestamp_seconds",
                    "Unix time the last successful run finished (0: none yet).",
                    job,
                    registry=registry,
                ),
                last_run=Gauge(
                    "scheduler_last_run_timestamp_seconds",
                    "Unix time the last run started (0: none yet).",
                    job,
                    registry=registry,
                ),
                failures=Gauge(
                    "scheduler_consecutive_failures",
                    "Runs that did not succeed since the last success.",
                    job,
                    registry=registry,
                ),
                conflicts=Counter(
                    "scheduler_state_conflicts",
                    "Saves refused because another process changed the state first, by write.",
                    [*job, "during"],
                    registry=registry,
                ),
                store_errors=Counter(
                    "scheduler_store_errors",
                    "Store calls that failed, by operation (ledger: a ledger write).",
                    [*job, "operation"],
                    registry=registry,
                ),
                degraded_seconds=Counter(
                    "scheduler_store_degraded_seconds",
                    "Time spent running from the in-memory mirror (counted at recovery and stop).",
                    job,
                    registry=registry,
                ),
                guard_errors=Counter(
                    "scheduler_guard_errors", "Guard calls that failed, by call.", [*job, "call"], registry=registry
                ),
                guard_timeouts=Counter(
                    "scheduler_guard_timeouts", "Guard calls that ran out of time.", job, registry=registry
                ),
            )
            _BY_REGISTRY[registry] = found
        return found


class PrometheusObserver:
    """A SchedulerObserver that maintains Prometheus metrics (see the module docstring).

    ``registry`` defaults to prometheus_client's global ``REGISTRY`` (what
    ``start_http_server()`` serves). Observers sharing a registry share the metrics, so one
    per Scheduler is fine. Events carry no "next run" after each trigger, so the gauge is
    updated from ``StateLoaded`` and ``next_run_at`` fields when present, and from
    :meth:`set_next_run` (the CLI calls it).
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else REGISTRY
        self._m = _metrics_for(self.registry)
        self._started: dict[tuple[str, datetime], datetime] = {}
        self._degraded_since: dict[str, datetime] = {}
        self._lock = threading.Lock()

    def seed(self, state: JobState) -> None:
        """Set the last-run, last-success and failure gauges from a stored state."""
        m, job = self._m, state.job_id
        if state.last_success_at is not None:
            m.last_success.labels(job).set(state.last_success_at.timestamp())
        if state.last_run_at is not None:
            m.last_run.labels(job).set(state.last_run_at.timestamp())
        m.failures.labels(job).set(state.consecutive_failures)

    def set_next_run(self, job_id: str, next_run_at: datetime | None) -> None:
        """Set the next-run gauge (None: nothing left to run, shown as 0)."""
        self._m.next_run.labels(job_id).set(0 if next_run_at is None else next_run_at.timestamp())

    def _prime(self, job_id: str) -> None:
        # Children exist from the start, so rate() sees 0 -> 1 rather than a missing series.
        for status in RunStatus:
            self._m.runs.labels(job_id, status.value)
        for reason in RunSkipReason:
            self._m.skips.labels(job_id, reason.value)
        self._m.duration.labels(job_id)
        self._m.lateness.labels(job_id)
        self._m.degraded.labels(job_id).set(0)
        self._m.lease_lost.labels(job_id).set(0)
        self._m.leases_lost.labels(job_id)
        self._m.running.labels(job_id).set(1)
        self._m.last_success.labels(job_id)
        self._m.last_run.labels(job_id)
        self._m.failures.labels(job_id)
        self._m.degraded_seconds.labels(job_id)
        self._m.guard_timeouts.labels(job_id)

    def on_event(self, event: SchedulerEvent) -> None:
        job = event.job_id
        m = self._m
        if isinstance(event, StateLoaded):
            self._prime(job)
            self.set_next_run(job, event.next_run_at)
        elif isinstance(event, TriggerEmitted):
            # Measured from the jittered due time: the chosen delay is not lateness.
            late = event.at - event.scheduled_at - event.delay
            m.lateness.labels(job).observe(max(0.0, late.total_seconds()))
        elif isinstance(event, RunStarted):
            with self._lock:
                self._started.setdefault((job, event.scheduled_at), event.at)
            if event.attempt == 1:
                m.last_run.labels(job).set(event.at.timestamp())
        elif isinstance(event, RunCompleted):
            m.runs.labels(job, event.status.value).inc()
            if event.status is RunStatus.SUCCESS:
                m.last_success.labels(job).set(event.at.timestamp())
                m.failures.labels(job).set(0)
            else:
                m.failures.labels(job).inc()
            with self._lock:
                started = self._started.pop((job, event.scheduled_at), None)
            started = event.started_at or started
            if started is not None:
                m.duration.labels(job).observe(max(0.0, (event.at - started).total_seconds()))
        elif isinstance(event, RunSkipped):
            m.skips.labels(job, event.reason.value).inc()
            if event.reason is RunSkipReason.GUARD_UNAVAILABLE:
                self._guard_error(job, "acquire", None)
        elif isinstance(event, RunsMissed):
            m.skips.labels(job, event.reason.value).inc(event.count)
        elif isinstance(event, StoreDegraded):
            m.store_errors.labels(job, event.operation.value).inc()
            if event.operation.value != "ledger":  # a failed ledger write leaves the store as it was
                m.degraded.labels(job).set(1)
                with self._lock:
                    self._degraded_since.setdefault(job, event.at)
        elif isinstance(event, StoreRecovered):
            m.degraded.labels(job).set(0)
            self._count_degraded(job, event.at)
        elif isinstance(event, StateConflict):
            m.conflicts.labels(job, event.during).inc()
        elif isinstance(event, ExecutionGuardLost):
            m.lease_lost.labels(job).set(1)
            m.leases_lost.labels(job).inc()
        elif isinstance(event, ExecutionGuardAcquired):
            if event.without_lease:
                self._guard_error(job, "acquire", None)
            else:
                m.lease_lost.labels(job).set(0)
        elif isinstance(event, ExecutionGuardRenewFailed):
            self._guard_error(job, "renew", event.error)
        elif isinstance(event, ExecutionGuardReleaseFailed):
            self._guard_error(job, "release", event.error)
        elif isinstance(event, SchedulerStopped):
            m.running.labels(job).set(0)
            self._count_degraded(job, event.at)
            if event.reason is SchedulerStopReason.TERMINAL:
                self.set_next_run(job, None)
        next_run = getattr(event, "next_run_at", None)
        if isinstance(next_run, datetime) and not isinstance(event, StateLoaded):
            self.set_next_run(job, next_run)

    def _guard_error(self, job: str, call: str, error: str | None) -> None:
        self._m.guard_errors.labels(job, call).inc()
        if error is not None and "timed out" in error:
            self._m.guard_timeouts.labels(job).inc()

    def _count_degraded(self, job: str, until: datetime) -> None:
        with self._lock:
            since = self._degraded_since.pop(job, None)
        if since is not None:
            self._m.degraded_seconds.labels(job).inc(max(0.0, (until - since).total_seconds()))
