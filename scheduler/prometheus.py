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

This module is not imported by ``import scheduler``.
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass
from datetime import datetime

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

from ._enums import RunSkipReason, RunStatus, SchedulerStopReason
from .events import (
    ExecutionGuardAcquired,
    ExecutionGuardLost,
    RunCompleted,
    RunSkipped,
    RunsMissed,
    RunStarted,
    SchedulerEvent,
    SchedulerStopped,
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
        self._lock = threading.Lock()

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
        elif isinstance(event, RunCompleted):
            m.runs.labels(job, event.status.value).inc()
            with self._lock:
                started = self._started.pop((job, event.scheduled_at), None)
            started = event.started_at or started
            if started is not None:
                m.duration.labels(job).observe(max(0.0, (event.at - started).total_seconds()))
        elif isinstance(event, RunSkipped):
            m.skips.labels(job, event.reason.value).inc()
        elif isinstance(event, RunsMissed):
            m.skips.labels(job, event.reason.value).inc(event.count)
        elif isinstance(event, StoreDegraded):
            m.degraded.labels(job).set(1)
        elif isinstance(event, StoreRecovered):
            m.degraded.labels(job).set(0)
        elif isinstance(event, ExecutionGuardLost):
            m.lease_lost.labels(job).set(1)
            m.leases_lost.labels(job).inc()
        elif isinstance(event, ExecutionGuardAcquired):
            m.lease_lost.labels(job).set(0)
        elif isinstance(event, SchedulerStopped):
            m.running.labels(job).set(0)
            if event.reason is SchedulerStopReason.TERMINAL:
                self.set_next_run(job, None)
        next_run = getattr(event, "next_run_at", None)
        if isinstance(next_run, datetime) and not isinstance(event, StateLoaded):
            self.set_next_run(job, next_run)
