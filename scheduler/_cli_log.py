"""Log output of ``scheduler run``: UTC timestamps with an explicit offset, one line per record.

Text lines read ``2025-06-01T09:00:00.123+00:00 INFO scheduler.cli: message``; in JSON mode
every line (the scheduler's events and the CLI's own lines alike) is one object with ``ts``,
``level`` and ``event`` plus fields. Python tracebacks are printed only at ``--log-level
debug``: otherwise an exception is reduced to ``ExcType: message`` on the same line.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

from ._enums import RunStatus
from .events import RunCompleted, SchedulerEvent

_log = logging.getLogger("scheduler.cli")


def _timestamp(record: logging.LogRecord) -> str:
    return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _exception_summary(record: logging.LogRecord) -> str:
    if not record.exc_info or record.exc_info[1] is None:
        return ""
    error = record.exc_info[1]
    return _one_line(f"{type(error).__name__}: {error}")


class TextFormatter(logging.Formatter):
    def __init__(self, tracebacks: bool) -> None:
        super().__init__()
        self._tracebacks = tracebacks

    def format(self, record: logging.LogRecord) -> str:
        line = f"{_timestamp(record)} {record.levelname} {record.name}: {_one_line(record.getMessage())}"
        if self._tracebacks and record.exc_info:
            return line + "\n" + self.formatException(record.exc_info)
        summary = _exception_summary(record)
        return f"{line}: {summary}" if summary else line


class JsonFormatter(logging.Formatter):
    def __init__(self, tracebacks: bool) -> None:
        super().__init__()
        self._tracebacks = tracebacks

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {"ts": _timestamp(record), "level": record.levelname.lower()}
        out["event"] = getattr(record, "event", None) or "log"
        out["logger"] = record.name
        out["message"] = record.getMessage()
        out.update(getattr(record, "fields", None) or {})
        if record.exc_info:
            out["error"] = _exception_summary(record)
            if self._tracebacks:
                out["traceback"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False, default=str)


def setup(log_format: str, level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    tracebacks = level == "debug"
    handler.setFormatter(JsonFormatter(tracebacks) if log_format == "json" else TextFormatter(tracebacks))
    root = logging.getLogger("scheduler")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False


def say(level: int, event: str, message: str, **fields: Any) -> None:
    """One CLI line: ``message`` in text mode, ``{"event": event, **fields}`` in JSON mode."""
    _log.log(level, message, extra={"event": event, "fields": fields})


class JsonLinesObserver:
    """``--log-format json``: one JSON object per scheduler event on stderr."""

    def on_event(self, event: SchedulerEvent) -> None:
        failed = isinstance(event, RunCompleted) and event.status is not RunStatus.SUCCESS
        level = "warning" if failed or type(event).__name__ in _WARNINGS else "info"
        record = {"ts": _iso(event.at), "level": level, "event": event.name, **event.fields()}
        sys.stderr.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
        sys.stderr.flush()


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="milliseconds")


_WARNINGS = {
    "StoreDegraded",
    "ExecutionGuardLost",
    "ExecutionGuardRenewFailed",
    "ExecutionGuardReleaseFailed",
    "RunsMissed",
}
