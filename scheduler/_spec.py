"""The machine-readable description of a job's schedule kept in its state (``schedule_spec``).

Tools (``history``, ``explain``, ``status``) read it to compute a job's occurrences and to
describe it without the flags it was started with.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from ._cron import Cron
from ._schedules import AtTimes, Interval, Schedule
from ._time import format_utc
from ._window import JobTimeWindow

#: Explicit instants listed in the spec at most; more are only counted (the fingerprint
#: still tells a changed list apart).
MAX_LISTED_INSTANTS = 50


def _seconds(value: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if value >= size and value % size == 0:
            return f"{value / size:g}{unit}"
    return f"{value:g}s"


def schedule_spec(
    schedule: Schedule,
    zone: ZoneInfo,
    *,
    window: JobTimeWindow | None,
    missed_run_policy: str,
    anchor: datetime | None,
) -> dict[str, Any]:
    """The spec of ``schedule`` (interval chains pass ``anchor``: one of their occurrences)."""
    spec: dict[str, Any]
    if isinstance(schedule, Interval):
        every = schedule.every.total_seconds()
        spec = {"kind": "interval", "every_seconds": every, "anchor": None if anchor is None else format_utc(anchor)}
        words = f"every {_seconds(every)}"
    elif isinstance(schedule, Cron):
        cron_zone = (schedule.timezone or zone).key
        spec = {"kind": "cron", "expression": schedule.expression, "timezone": cron_zone}
        words = f"cron {schedule.expression} {cron_zone}"
    elif isinstance(schedule, AtTimes):
        times = schedule.times
        spec = {
            "kind": "at",
            "count": len(times),
            "instants": [format_utc(t) for t in times[:MAX_LISTED_INSTANTS]],
            "truncated": len(times) > MAX_LISTED_INSTANTS,
        }
        words = f"at {len(times)} instant{'s' if len(times) != 1 else ''}"
    else:
        spec = {"kind": "custom", "repr": repr(schedule)}
        words = repr(schedule)
    spec["timezone_default"] = zone.key
    spec["missed_run_policy"] = missed_run_policy
    if window is not None:
        spec["window"] = {
            "timezone": (window.timezone or zone).key,
            "weekdays": [int(d) for d in window.weekdays],
            "segments": [[f"{s.start:%H:%M:%S}", f"{s.end:%H:%M:%S}"] for s in window.segments],
        }
        words += f", window {window.describe()}"
    spec["description"] = words
    return spec


def interval_anchor(
    stored: dict[str, Any] | None, next_run_at: datetime | None, every_seconds: float
) -> datetime | None:
    """Keep the stored interval anchor while ``next_run_at`` is still on its chain."""
    if stored is not None and stored.get("kind") == "interval" and stored.get("every_seconds") == every_seconds:
        text = stored.get("anchor")
        if isinstance(text, str) and next_run_at is not None:
            anchor = datetime.fromisoformat(text.replace("Z", "+00:00"))
            offset = (next_run_at - anchor).total_seconds()
            if abs(offset / every_seconds - round(offset / every_seconds)) < 1e-9:
                return anchor
    return next_run_at
