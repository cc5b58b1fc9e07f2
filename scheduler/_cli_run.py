"""``scheduler run``: build the job from flags, wire store/guard/observers/signals, run it."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from ._cli import EXIT_ERROR, EXIT_OK, default_state_url, open_store, parse_instant, redact, scrub
from ._clock import SystemClock
from ._command import DEFAULT_KILL_GRACE, CommandTask
from ._config import SchedulerConfig
from ._cron import Cron
from ._duration import parse_window
from ._enums import RunStatus, SchedulerStopReason, TriggerSource
from ._errors import ExecutionGuardError, InvalidJobError, InvalidJobKind, StoreError
from ._guard import ExecutionGuard
from ._job import Job, RetryPolicy
from ._observers import LogObserver
from ._schedules import AtTimes, Interval, Schedule
from ._state import SchedulerReport
from ._time import format_utc
from .events import RunCompleted, RunSkipped, RunsMissed, SchedulerEvent, TriggerEmitted

_log = logging.getLogger("scheduler.cli")
DEFAULT_LEASE_TTL = timedelta(seconds=30)
#: Signals PID 1 passes on to the real CLI process.
_FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)
#: Test hook for fault tests: ``N`` makes the process stop itself (SIGSTOP) between the pre-run
#: save and the guard acquire of its Nth guarded trigger, until someone sends SIGCONT.
STOP_BEFORE_ACQUIRE_ENV = "SCHEDULER_TEST_STOP_BEFORE_ACQUIRE"


def build_job(args: argparse.Namespace, command: list[str]) -> tuple[Job, SchedulerConfig]:
    """Flags -> (Job, SchedulerConfig); InvalidJobError for anything unusable (exit 2)."""
    config = SchedulerConfig(timezone=args.timezone)
    schedule: Schedule
    if args.every is not None:
        schedule = Interval(args.every)
    elif args.cron is not None:
        schedule = Cron(args.cron)
    else:
        schedule = AtTimes([parse_instant(text, args.timezone) for text in args.at])
    grace = args.kill_grace.total_seconds() if args.kill_grace is not None else DEFAULT_KILL_GRACE
    task = CommandTask(command, log_format=args.log_format, kill_grace=grace).task()
    job = Job(
        args.job_id,
        schedule,
        task,
        max_runs=args.max_runs,
        missed_run_policy=args.missed,
        overlap_policy=args.overlap,
        time_window=parse_window(args.window) if args.window else None,
        retry=RetryPolicy(max_attempts=args.retries + 1) if args.retries else None,
        timeout=args.timeout,
    )
    return job, config


def open_guard(url: str, ttl: timedelta) -> ExecutionGuard:
    if url.partition(":")[0].lower() not in {"valkey", "valkeys", "redis", "rediss"}:
        raise InvalidJobError(InvalidJobKind.OTHER, f"unsupported guard URL {redact(url)!r}: use valkey:// or redis://")
    from ._valkey_guard import ValkeyExecutionGuard

    # Renew three times per TTL: two renewals may fail before the lease is in danger.
    return ValkeyExecutionGuard(url, ttl=ttl, renew_interval=ttl / 3)


class JsonLinesObserver:
    """``--log-format json``: one JSON object per event on stderr (``ts``, ``level``, ``event``)."""

    def __init__(self) -> None:
        self._clock = SystemClock()

    def on_event(self, event: SchedulerEvent) -> None:
        failed = isinstance(event, RunCompleted) and event.status is not RunStatus.SUCCESS
        level = "warning" if failed or type(event).__name__ in _WARNINGS else "info"
        record = {"ts": format_utc(self._clock.now()), "level": level, "event": event.name, **event.fields()}
        sys.stderr.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
        sys.stderr.flush()


_WARNINGS = {
    "StoreDegraded",
    "ExecutionGuardLost",
    "ExecutionGuardRenewFailed",
    "ExecutionGuardReleaseFailed",
    "RunsMissed",
}


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {"ts": format_utc(SystemClock().now()), "level": record.levelname.lower()}
        out["message"] = record.getMessage()
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


def _setup_logging(log_format: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("scheduler")
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    root.propagate = False


def _next_run_tracker(job: Job, config: SchedulerConfig, set_next: Callable[[str, datetime | None], None]) -> Any:
    """Keeps the next-run gauge current: events do not carry next_run_at after a trigger."""

    def on_event(event: SchedulerEvent) -> None:
        if isinstance(event, TriggerEmitted) and event.source is TriggerSource.MANUAL:
            return
        if isinstance(event, TriggerEmitted | RunSkipped):
            last, count = event.scheduled_at, event.trigger_count
        elif isinstance(event, RunsMissed):
            last, count = event.last_scheduled_at, 0
        else:
            return
        done = job.max_runs is not None and count >= job.max_runs
        set_next(job.job_id, None if done else job.schedule.next_after(last, config.timezone))

    return on_event


def _start_metrics(spec: str, observers: list[Any], job: Job, config: SchedulerConfig) -> Callable[[], None]:
    host, _, port_text = spec.rpartition(":")
    if not port_text.isdigit() or int(port_text) > 65535:
        raise InvalidJobError(InvalidJobKind.OTHER, f"--metrics-port {spec!r} is not [HOST:]PORT")
    from prometheus_client import start_http_server  # ImportError -> "missing optional dependency"

    from .prometheus import PrometheusObserver

    observer = PrometheusObserver()
    server, thread = start_http_server(int(port_text), addr=host.strip("[]") or "127.0.0.1")
    bound_host, bound_port = server.server_address[:2]
    _log.info("metrics_url=http://%s:%s/metrics", bound_host, bound_port)
    observers += [observer, _next_run_tracker(job, config, observer.set_next_run)]

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

    return stop


def _write_report(path: str, report: SchedulerReport) -> None:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = target.with_name(f".{target.name}.tmp")
    temp.write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    temp.replace(target)  # atomic: a reader never sees half a report


def _install_test_hook() -> None:
    """Honour ``SCHEDULER_TEST_STOP_BEFORE_ACQUIRE`` (fault tests only; see docs/reliability.md)."""
    text = os.environ.get(STOP_BEFORE_ACQUIRE_ENV)
    if not text:
        return
    if not text.isdigit() or int(text) < 1:
        raise InvalidJobError(InvalidJobKind.OTHER, f"{STOP_BEFORE_ACQUIRE_ENV}={text!r} is not a whole number >= 1")
    from . import _leasing

    target, seen = int(text), [0]

    def stop_here() -> None:
        seen[0] += 1
        if seen[0] == target:
            _log.warning("test hook: stopping before acquire %d (pid %d)", target, os.getpid())
            os.kill(os.getpid(), signal.SIGSTOP)

    _leasing.before_acquire = stop_here


async def _run(args: argparse.Namespace, command: list[str]) -> int:
    job, config = build_job(args, command)
    _install_test_hook()
    state_url = args.state or default_state_url()
    store = open_store(state_url)
    guard = open_guard(args.guard, args.lease_ttl or DEFAULT_LEASE_TTL) if args.guard else None
    from ._runner import Scheduler

    observers: list[Any] = [JsonLinesObserver() if args.log_format == "json" else LogObserver()]
    stop_metrics = _start_metrics(args.metrics_port, observers, job, config) if args.metrics_port else None
    scheduler = Scheduler(config, store, observer=observers, guard=guard)
    handle, loop, received = scheduler.handle(), asyncio.get_running_loop(), []

    def on_signal(signum: int) -> None:
        received.append(signum)
        name = signal.Signals(signum).name
        if len(received) == 1:
            _log.warning("received %s: finishing the running command, then exiting (send again to cancel)", name)
            handle.shutdown()
        else:
            _log.warning("received %s again: cancelling the running command", name)
            handle.cancel()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    _log.info("starting job_id=%s state=%s command=%s", job.job_id, redact(state_url), json.dumps(command))
    try:
        report = await scheduler.run(job)
    except (StoreError, ExecutionGuardError) as exc:
        _log.error("%s", scrub(" ".join(str(exc).split()), state_url, args.guard))
        return EXIT_ERROR
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
        await store.aclose()
        closer = getattr(guard, "aclose", None)
        if closer is not None:
            await closer()
        if stop_metrics is not None:
            stop_metrics()
    if args.report:
        _write_report(args.report, report)
    _log.info("stopped job_id=%s reason=%s runs=%d", job.job_id, report.stop_reason.value, report.runs)
    if report.stop_reason is SchedulerStopReason.CANCELLED and received:
        return 128 + received[-1]
    if report.stop_reason in (SchedulerStopReason.TERMINAL, SchedulerStopReason.SHUTDOWN):
        return EXIT_OK
    return EXIT_ERROR


def _reap_as_init() -> int | None:
    """When we are PID 1 (a container's entrypoint), fork: the parent stays PID 1, forwards
    signals and reaps every orphan (as tini does); the child runs the CLI. Returns the exit
    status in the parent, None in the child."""
    if os.getpid() != 1 or os.environ.get("SCHEDULER_NO_INIT"):
        return None
    child = os.fork()
    if child == 0:
        return None
    for signum in _FORWARDED:
        signal.signal(signum, lambda s, _f: os.kill(child, s))
    while True:
        pid, status = os.wait()  # reaps orphans too; PEP 475 retries after a forwarded signal
        if pid == child:
            code = os.waitstatus_to_exitcode(status)
            return code if code >= 0 else 128 - code


def run_command(args: argparse.Namespace, command: list[str]) -> int:
    """``scheduler run``: returns the CLI exit status."""
    status = _reap_as_init()
    if status is not None:
        return status
    _setup_logging(args.log_format)
    try:
        return asyncio.run(_run(args, command))
    except ImportError as exc:
        _log.error("missing optional dependency: %s (install scheduler-runner[valkey] or [prometheus])", exc)
        return EXIT_ERROR
    except OSError as exc:  # metrics port taken, report not writable, ...
        _log.error("%s", scrub(str(exc), args.state, args.guard))
        return EXIT_ERROR
