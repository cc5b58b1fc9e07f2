"""``scheduler run`` and ``scheduler check``: flags -> job, start-up checks, signals, the run."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import warnings
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from ._cli_checks import StartupFailed, check_command, check_report, print_next, probe_guard, probe_store
from ._cli_common import (
    EXIT_ERROR,
    EXIT_OK,
    EXIT_USAGE,
    UsageError,
    default_state_url,
    open_store,
    parse_instant,
    redact,
    scrub,
)
from ._cli_log import JsonLinesObserver, say, setup
from ._command import DEFAULT_KILL_GRACE, CommandTask
from ._config import SchedulerConfig
from ._cron import Cron
from ._duration import parse_window
from ._enums import SchedulerStopReason, TriggerSource
from ._errors import ExecutionGuardError, InvalidJobError, InvalidJobKind, StoreError
from ._guard import ExecutionGuard
from ._job import Job, RetryPolicy
from ._observers import LogObserver
from ._schedules import AtTimes, Interval, Schedule
from ._state import SchedulerReport
from ._store import StateStore
from ._valkey_common import is_valkey_url
from .events import RunSkipped, RunsMissed, SchedulerEvent, TriggerEmitted

DEFAULT_LEASE_TTL = timedelta(seconds=30)
#: Signals PID 1 passes on to the real CLI process.
_FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)
#: First one: graceful shutdown; a second one: cancel the running command.
_STOPPING = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
#: Test hook for fault tests: ``N`` makes the process stop itself (SIGSTOP) between the pre-run
#: save and the guard acquire of its Nth guarded trigger, until someone sends SIGCONT.
STOP_BEFORE_ACQUIRE_ENV = "SCHEDULER_TEST_STOP_BEFORE_ACQUIRE"


def build_job(args: argparse.Namespace, command: list[str]) -> tuple[Job, SchedulerConfig, list[str]]:
    """Flags -> (Job, SchedulerConfig, warnings); InvalidJobError for anything unusable (exit 2)."""
    config = SchedulerConfig(
        timezone=args.timezone,
        terminal_state_policy=args.terminal,
        misfire_grace=args.misfire_grace if args.misfire_grace is not None else timedelta(seconds=1),
        catch_up_window=args.catch_up_window,
        lease_lost_policy=args.on_lease_lost,
        guard_error_policy=args.on_guard_error,
        resume_interrupted=args.resume_interrupted,
        ledger_limit=args.ledger_limit,
    )
    schedule: Schedule
    if args.every is not None:
        schedule = Interval(args.every)
    elif args.cron is not None:
        schedule = Cron(args.cron)
    else:
        schedule = AtTimes([parse_instant(text, args.timezone) for text in args.at])
    grace = args.kill_grace.total_seconds() if args.kill_grace is not None else DEFAULT_KILL_GRACE
    task = CommandTask(command, log_format=args.log_format, kill_grace=grace).task()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
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
            jitter=args.jitter or timedelta(0),
        )
    return job, config, [str(w.message) for w in caught]


def open_guard(url: str, ttl: timedelta) -> ExecutionGuard:
    if not is_valkey_url(url) or url.strip().lower().startswith("resilient+"):
        raise InvalidJobError(
            InvalidJobKind.OTHER, f"unsupported guard URL {redact(url)!r}: use valkey://, redis:// or valkey+cluster://"
        )
    from ._valkey_guard import open_valkey_guard

    return open_valkey_guard(url, ttl)


def _next_run_tracker(job: Job, config: SchedulerConfig, set_next: Callable[[str, Any], None]) -> Any:
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


def _metrics_address(spec: str) -> tuple[str, int]:
    host, _, port_text = spec.rpartition(":")
    if not port_text.isascii() or not port_text.isdigit() or int(port_text) > 65535:
        raise InvalidJobError(InvalidJobKind.OTHER, f"--metrics-port {spec!r} is not [HOST:]PORT (0-65535)")
    return host.strip("[]") or "127.0.0.1", int(port_text)


def _start_metrics(
    args: argparse.Namespace, observers: list[Any], job: Job, config: SchedulerConfig, backends: tuple[Any, ...]
) -> Callable[[], None]:
    """Serve /metrics, /healthz and /readyz; returns the function that stops the server."""
    spec, state = args.metrics_port, backends[2]
    host, port = _metrics_address(spec)
    from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest  # ImportError: missing extra

    from ._health import HealthServer, Readiness, Watchdog, valkey_clients
    from .prometheus import PrometheusObserver

    observer = PrometheusObserver()
    if state is not None:
        observer.seed(state)
    readiness = Readiness()
    lag = args.health_lag.total_seconds() if args.health_lag else None
    watchdog = Watchdog() if lag is None else Watchdog(lag)
    try:
        server = HealthServer(host, port, readiness, watchdog, lambda: (generate_latest(REGISTRY), CONTENT_TYPE_LATEST))
    except OSError as exc:
        raise StartupFailed(
            EXIT_ERROR, f"cannot serve metrics on {spec}: {exc.strerror if exc.strerror else exc}"
        ) from exc
    server.start(valkey_clients(backends[0], backends[1]))
    bound_host, bound_port = server.address
    url = f"http://{bound_host}:{bound_port}/metrics"
    say(logging.INFO, "metrics_listening", f"serving metrics metrics_url={url} (and /healthz, /readyz)", url=url)
    observers += [observer, readiness, _next_run_tracker(job, config, observer.set_next_run)]
    return server.stop


def write_report(path: str, report: SchedulerReport) -> None:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = target.with_name(f".{target.name}.tmp")
    temp.write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    temp.replace(target)  # atomic: a reader never sees half a report


def install_test_hook() -> None:
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
            say(logging.WARNING, "test_hook", f"test hook: stopping before acquire {target} (pid {os.getpid()})")
            os.kill(os.getpid(), signal.SIGSTOP)

    _leasing.before_acquire = stop_here


class _Signals:
    """TERM/INT/HUP: first graceful, then cancel. USR1: run now. USR2: pause/resume."""

    def __init__(self, handle: Any, loop: asyncio.AbstractEventLoop) -> None:
        self.handle, self.loop = handle, loop
        self.stops: list[int] = []
        self.paused = False
        self.installed: list[int] = []

    def install(self) -> None:
        for signum in (*_STOPPING, signal.SIGUSR1, signal.SIGUSR2):
            self.loop.add_signal_handler(signum, self.on_signal, signum)
            self.installed.append(signum)

    def remove(self) -> None:
        for signum in self.installed:
            self.loop.remove_signal_handler(signum)

    def on_signal(self, signum: int) -> None:
        name = signal.Signals(signum).name
        if signum in _STOPPING:
            self.stops.append(signum)
            if len(self.stops) == 1:
                say(logging.WARNING, "signal", f"received {name}: finishing the running command, then exiting "
                    "(send again to cancel)", signal=name, action="shutdown")  # fmt: skip
                self.handle.shutdown()
            else:
                say(logging.WARNING, "signal", f"received {name} again: cancelling the running command",
                    signal=name, action="cancel")  # fmt: skip
                self.handle.cancel()
        elif signum == signal.SIGUSR1:
            say(logging.INFO, "signal", f"received {name}: running the command now", signal=name, action="trigger")
            self.handle.trigger_now()
        else:
            self.paused = not self.paused
            action = "pause" if self.paused else "resume"
            text = "pausing: no new runs until the next SIGUSR2" if self.paused else "resuming"
            say(logging.INFO, "signal", f"received {name}: {text}", signal=name, action=action)
            (self.handle.pause if self.paused else self.handle.resume)()


async def _open(args: argparse.Namespace, job: Job, check_only: bool) -> tuple[StateStore, ExecutionGuard | None, Any]:
    """Open and probe the store and the guard, waiting up to --startup-timeout for them."""
    state_url = args.state or default_state_url()
    store = open_store(state_url)
    guard = open_guard(args.guard, args.lease_ttl or DEFAULT_LEASE_TTL) if args.guard else None
    timeout = args.startup_timeout.total_seconds()
    try:
        state = await probe_store(store, state_url, job.job_id, timeout)
        if guard is not None:
            await probe_guard(guard, args.guard, timeout)
    except BaseException:
        await _close(store, guard)
        raise
    return store, guard, state


async def _close(store: StateStore, guard: ExecutionGuard | None) -> None:
    await store.aclose()
    closer = getattr(guard, "aclose", None)
    if closer is not None:
        await closer()


async def _check(args: argparse.Namespace, job: Job, config: SchedulerConfig) -> int:
    store, guard, state = await _open(args, job, check_only=True)
    await _close(store, guard)
    print(f"ok: job {job.job_id!r}, state in {redact(args.state or default_state_url())}")
    print_next(job, config, state)
    return EXIT_OK


async def _run(args: argparse.Namespace, command: list[str], job: Job, config: SchedulerConfig) -> int:
    state_url = args.state or default_state_url()
    store, guard, state = await _open(args, job, check_only=False)
    from ._scheduler import Scheduler

    observers: list[Any] = [JsonLinesObserver() if args.log_format == "json" else LogObserver()]
    stop_metrics = None
    ping = None
    try:
        if args.metrics_port:
            stop_metrics = _start_metrics(args, observers, job, config, (store, guard, state))
        if args.ping_url:
            from ._ping import HttpPingObserver

            ping = HttpPingObserver(args.ping_url)
            observers.append(ping)
    except BaseException:
        if stop_metrics is not None:
            stop_metrics()
        await _close(store, guard)
        raise
    scheduler = Scheduler(config, store, observer=observers, guard=guard)
    signals = _Signals(scheduler.handle(), asyncio.get_running_loop())
    signals.install()
    if args.run_on_start:
        signals.handle.trigger_now()
    text = f"starting job_id={job.job_id} state={redact(state_url)} command={json.dumps(command)}"
    say(logging.INFO, "starting", text, job_id=job.job_id, state=redact(state_url), command=command)
    try:
        report = await scheduler.run(job)
    except (StoreError, ExecutionGuardError) as exc:
        say(logging.ERROR, "fatal", scrub(" ".join(str(exc).split()), state_url, args.guard))
        return EXIT_ERROR
    finally:
        signals.remove()
        await _close(store, guard)
        if stop_metrics is not None:
            stop_metrics()
        if ping is not None:
            await asyncio.to_thread(ping.close)  # bounded: at most a few seconds
    if args.report:
        try:
            write_report(args.report, report)
        except OSError as exc:
            say(
                logging.ERROR,
                "report_failed",
                f"cannot write the report {args.report}: {exc.strerror if exc.strerror else exc}",
            )
            return EXIT_ERROR
    say(logging.INFO, "stopped", f"stopped job_id={job.job_id} reason={report.stop_reason.value} runs={report.runs}",
        job_id=job.job_id, reason=report.stop_reason.value, runs=report.runs)  # fmt: skip
    if report.stop_reason is SchedulerStopReason.CANCELLED and signals.stops:
        return 128 + signals.stops[-1]
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
    """``scheduler run`` / ``scheduler check``: returns the CLI exit status.

    Usage mistakes (InvalidJobError) propagate to ``main`` (exit 2); everything else found
    before the first occurrence is one line and exit 1 (or 2 for a command or report path
    that can never work).
    """
    check_only = args.command == "check"
    status = None if check_only else _reap_as_init()
    if status is not None:
        return status
    job, config, notes = build_job(args, command)
    install_test_hook()
    if args.ping_url:
        from ._ping import HttpPingObserver

        HttpPingObserver(args.ping_url)  # a bad URL is a usage error, found now
    try:
        check_command(command)
        if args.report:
            check_report(args.report)
        if args.metrics_port:
            _metrics_address(args.metrics_port)
    except StartupFailed as exc:
        raise UsageError(exc.message) from None
    setup(args.log_format, args.log_level)
    for note in notes:
        say(logging.WARNING, "warning", note)
    try:
        return asyncio.run(_check(args, job, config) if check_only else _run(args, command, job, config))
    except StartupFailed as exc:
        say(logging.ERROR, "startup_failed", scrub(exc.message, args.state, args.guard), code=exc.code)
        return exc.code
    except ImportError as exc:
        say(logging.ERROR, "startup_failed", f"missing optional dependency: {exc} (install scheduler-runner[valkey] "
            "or [prometheus])")  # fmt: skip
        return EXIT_ERROR
    except OSError as exc:
        say(logging.ERROR, "fatal", scrub(str(exc), args.state, args.guard))
        return EXIT_ERROR


__all__ = ["EXIT_USAGE", "build_job", "run_command"]
