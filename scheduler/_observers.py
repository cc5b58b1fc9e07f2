"""Observer protocol, fan-out with failure isolation, and the logging observer."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Protocol, runtime_checkable

from .events import (
    ExecutionGuardLost,
    ExecutionGuardReleaseFailed,
    ExecutionGuardRenewFailed,
    RunCompleted,
    RunsMissed,
    SchedulerEvent,
    StoreDegraded,
)

_log = logging.getLogger("scheduler")

#: Identical warnings within this span are logged once, then counted.
WARNING_RATE_LIMIT = timedelta(seconds=60)


@runtime_checkable
class SchedulerObserver(Protocol):
    """Receives every event. Must not block for long: it runs on the event loop."""

    def on_event(self, event: SchedulerEvent) -> None: ...


ObserverLike = SchedulerObserver | Callable[[SchedulerEvent], object]


class NoopObserver:
    """Ignores every event (the default)."""

    def on_event(self, event: SchedulerEvent) -> None:
        return None


def _callback(observer: ObserverLike) -> Callable[[SchedulerEvent], object]:
    if isinstance(observer, SchedulerObserver):
        return observer.on_event
    if callable(observer):
        return observer
    raise TypeError(f"observer must have on_event(event) or be callable, got {observer!r}")


class Fanout:
    """Delivers events to several observers; an observer that raises is logged and skipped."""

    __slots__ = ("_callbacks",)

    def __init__(self, observers: ObserverLike | Iterable[ObserverLike] | None) -> None:
        if observers is None:
            items: list[ObserverLike] = []
        elif isinstance(observers, list | tuple):
            items = list(observers)
        else:
            items = [observers]  # type: ignore[list-item]
        self._callbacks = [_callback(o) for o in items if not isinstance(o, NoopObserver)]

    def __bool__(self) -> bool:
        return bool(self._callbacks)

    def add(self, observer: ObserverLike) -> None:
        self._callbacks.append(_callback(observer))

    def on_event(self, event: SchedulerEvent) -> None:
        for callback in self._callbacks:
            try:
                callback(event)
            except Exception:
                _log.exception("observer %r failed on %s; ignored", callback, event.name)


def _is_warning(event: SchedulerEvent) -> bool:
    if isinstance(event, StoreDegraded | ExecutionGuardLost | ExecutionGuardRenewFailed | ExecutionGuardReleaseFailed):
        return True
    if isinstance(event, RunCompleted):
        return event.status.value != "success"
    return isinstance(event, RunsMissed)


class LogObserver:
    """Logs one ``key=value`` line per event on the ``scheduler`` logger.

    Degraded stores, lost leases and failed runs are warnings; identical warnings repeated
    within a minute (by event time) are logged once and then summarised.
    """

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self._logger = logger or _log
        self._recent: dict[str, tuple[datetime, int]] = {}

    def on_event(self, event: SchedulerEvent) -> None:
        fields = event.fields()
        text = " ".join(f"{k}={_format(v)}" for k, v in fields.items() if k != "at")
        line = f"event={event.name} {text}"
        if not _is_warning(event):
            self._logger.info(line)
            return
        key = f"{event.name}:{fields.get('error')}:{fields.get('status')}"
        seen = self._recent.get(key)
        if seen is not None and event.at - seen[0] < WARNING_RATE_LIMIT:
            self._recent[key] = (seen[0], seen[1] + 1)
            self._logger.debug(line)
            return
        suppressed = seen[1] if seen else 0
        self._recent[key] = (event.at, 0)
        suffix = f" (repeated {suppressed} more times)" if suppressed else ""
        self._logger.warning(line + suffix)


def _format(value: object) -> str:
    if value is None:
        return "-"
    text = str(value)
    return f'"{text}"' if (" " in text or not text) else text
