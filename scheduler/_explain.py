""" "What happened at T?": one or two plain sentences from a job's schedule spec, ledger and state.

Pure (no I/O, never reads the time): :func:`explain` takes the stored ``schedule_spec``, the
job's ledger entries, its state and the instant asked about; :func:`readings` turns a local
time into the instants it can mean (two in a DST fold or gap).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from ._cron import Cron
from ._enums import RunSkipReason
from ._ledger import LedgerEntry, LedgerFate
from ._state import JobState

#: A time typed to the second matches an occurrence that far after it (interval chains keep
#: the sub-second part of their first start).
TOLERANCE = timedelta(seconds=1)

_REASONS = {
    RunSkipReason.MISSED: "it fell due while no scheduler was running",
    RunSkipReason.COALESCED: "it was merged into a single catch-up run",
    RunSkipReason.OVERLAP: "the previous run was still running",
    RunSkipReason.CONTENDED: "another replica held the lease for it",
    RunSkipReason.GUARD_UNAVAILABLE: "the execution guard could not be reached",
    RunSkipReason.PAUSED: "the scheduler was paused",
    RunSkipReason.SHUTDOWN: "the scheduler was shutting down",
}
_RUN_WORDS = {
    LedgerFate.SUCCESS: "succeeded",
    LedgerFate.FAILED: "failed",
    LedgerFate.TIMED_OUT: "timed out",
    LedgerFate.CANCELLED: "was cancelled",
}


@dataclass(frozen=True, slots=True)
class Answer:
    """``kind``: ran, skipped, missed, interrupted, not_an_occurrence, not_yet_due, finished,
    too_old, not_started or unrecorded. ``text``: the sentence(s)."""

    kind: str
    text: str


def when(instant: datetime, zone: ZoneInfo) -> str:
    """``2025-06-01 03:00:00 CEST (2025-06-01T01:00:00Z)``."""
    local, utc = instant.astimezone(zone), instant.astimezone(UTC)
    if instant.microsecond:  # sub-second schedules: keep occurrences apart
        return f"{local:%Y-%m-%d %H:%M:%S.%f}"[:-3] + f" {local.tzname()} ({utc:%Y-%m-%dT%H:%M:%S.%f}"[:-3] + "Z)"
    return f"{local:%Y-%m-%d %H:%M:%S} {local.tzname()} ({utc:%Y-%m-%dT%H:%M:%SZ})"


def job_zone(spec: dict[str, Any] | None) -> ZoneInfo:
    """The zone a job's times read in: its cron's, else its default, else UTC."""
    spec = spec or {}
    return ZoneInfo(str(spec.get("timezone") or spec.get("timezone_default") or "UTC"))


def readings(local: datetime, zone: ZoneInfo) -> list[datetime]:
    """The UTC instants a wall-clock time in ``zone`` can mean: one, or two in a fold or gap."""
    if local.tzinfo is not None:
        return [local.astimezone(UTC)]
    first = local.replace(tzinfo=zone, fold=0).astimezone(UTC)
    second = local.replace(tzinfo=zone, fold=1).astimezone(UTC)
    return [first] if first == second else sorted({first, second})


def is_wall_time(local: datetime, zone: ZoneInfo) -> bool:
    """False for a time skipped by a DST gap (it names no instant on the clock)."""
    aware = local.replace(tzinfo=zone)
    return aware.astimezone(UTC).astimezone(zone).replace(tzinfo=None) == local.replace(tzinfo=None)


def neighbours(
    spec: dict[str, Any] | None, at: datetime
) -> tuple[bool | None, datetime, datetime | None, datetime | None]:
    """(whether ``at`` names an occurrence, that occurrence (else ``at``), the nearest one
    before it, the nearest one after it). None for the first when the spec cannot tell (a
    custom schedule, a truncated list of instants, or no spec stored)."""
    kind = (spec or {}).get("kind")
    tolerance = _tolerance(at)
    if spec is None or kind not in ("interval", "cron", "at") or (kind == "at" and spec.get("truncated")):
        return None, at, None, None
    if kind == "interval":
        if not spec.get("anchor"):
            return None, at, None, None
        every = timedelta(seconds=float(spec["every_seconds"]))
        anchor = _instant(spec["anchor"])
        above = anchor - ((anchor - at) // every) * every  # the first occurrence at or after ``at``
        if above - at < tolerance:
            return True, above, above - every, above + every
        return False, at, above - every, above
    if kind == "cron":
        zone = ZoneInfo(str(spec["timezone"]))
        cron = Cron(str(spec["expression"]), zone)
        above_or_none = cron.next_after(at - timedelta(microseconds=1), zone)
        if above_or_none is not None and above_or_none - at < tolerance:
            hit = above_or_none
            return True, hit, cron.last_at_or_before(hit - timedelta(microseconds=1), zone), cron.next_after(hit, zone)
        return False, at, cron.last_at_or_before(at, zone), above_or_none
    instants = sorted(_instant(text) for text in spec.get("instants", []))
    match = next((t for t in instants if timedelta(0) <= t - at < tolerance), None)
    pivot = match or at
    before = max((t for t in instants if t < pivot), default=None)
    after = min((t for t in instants if t > pivot), default=None)
    return match is not None, pivot, before, after


def _tolerance(at: datetime) -> timedelta:
    """A time matches what happened within its last given digit: ``03:00`` the whole second,
    ``03:00:00.250`` that millisecond, a time to the microsecond exactly."""
    if at.microsecond == 0:
        return TOLERANCE
    return timedelta(milliseconds=1) if at.microsecond % 1000 == 0 else timedelta(microseconds=1)


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def explain(
    spec: dict[str, Any] | None, entries: Sequence[LedgerEntry], state: JobState, at: datetime, zone: ZoneInfo
) -> Answer:
    """What became of the occurrence at ``at`` (UTC-aware), in the words of :class:`Answer`."""
    tolerance = _tolerance(at)
    singles = [e for e in entries if e.count == 1 and timedelta(0) <= e.scheduled_at - at < tolerance]
    if singles:
        answers = [_entry(e, spec, zone) for e in sorted(singles, key=lambda e: e.scheduled_at)]
        return Answer(answers[0].kind, " ".join(a.text for a in answers))
    is_occurrence, at, before, after = neighbours(spec, at)
    ranges = [e for e in entries if e.count > 1 and e.scheduled_at <= at <= e.last_scheduled_at]
    if ranges and is_occurrence is not False:
        return _range(ranges[0], at, spec, zone)
    if is_occurrence is False:
        near = [f"before it {when(before, zone)}" if before else "", f"after it {when(after, zone)}" if after else ""]
        listed = " and ".join(t for t in near if t) or "none"
        what = (spec or {}).get("description", "the schedule")
        return Answer(
            "not_an_occurrence", f"{when(at, zone)} is not an occurrence of {what}; the nearest are {listed}."
        )
    return _unrecorded(entries, state, at, zone)


def _entry(entry: LedgerEntry, spec: dict[str, Any] | None, zone: ZoneInfo) -> Answer:
    head = f"The occurrence of {when(entry.scheduled_at, zone)}"
    if entry.source.value == "manual":
        head = f"The manual run of {when(entry.scheduled_at, zone)}"
    by = f" on {entry.instance}" if entry.instance else ""
    if entry.fate in _RUN_WORDS:
        attempts = f"{entry.attempts} attempt{'s' if entry.attempts != 1 else ''}"
        took = f" in {_seconds(entry.duration_seconds)}" if entry.duration_seconds is not None else ""
        detail = ""
        if entry.fate is not LedgerFate.SUCCESS and (entry.error or entry.exit_code is not None):
            detail = f": {entry.error or f'exit code {entry.exit_code}'}"
        late = " (a catch-up run)" if entry.catch_up else ""
        return Answer("ran", f"{head} ran{late} and {_RUN_WORDS[entry.fate]} after {attempts}{took}{by}{detail}.")
    if entry.fate is LedgerFate.INTERRUPTED:
        started = f" at {when(entry.started_at, zone)}" if entry.started_at else ""
        return Answer("interrupted", f"{head} started{by}{started} but never reported: its process died (interrupted).")
    reason = entry.reason or RunSkipReason.MISSED
    return Answer("skipped", f"{head} did not run: {_reason_words(reason, spec)} (skipped: {reason.value}{by}).")


def _seconds(value: float) -> str:
    return f"{value:.3f}s" if value < 10 else f"{value:.1f}s"


def _reason_words(reason: RunSkipReason, spec: dict[str, Any] | None) -> str:
    if reason is RunSkipReason.OUTSIDE_TIME_WINDOW:
        window = (spec or {}).get("description", "").partition(", window ")[2]
        return f"it fell outside the time window {window}" if window else "it fell outside the job's time window"
    return _REASONS[reason]


def _range(entry: LedgerEntry, at: datetime, spec: dict[str, Any] | None, zone: ZoneInfo) -> Answer:
    policy = str((spec or {}).get("missed_run_policy", "unknown")).replace("_", "-")
    reason = entry.reason or RunSkipReason.MISSED
    why = {
        RunSkipReason.MISSED: "fell due while no scheduler was running",
        RunSkipReason.COALESCED: "were merged into a single catch-up run",
    }.get(reason, _reason_words(reason, spec).removeprefix("it "))
    text = (
        f"The occurrence of {when(at, zone)} did not run: it is one of {entry.count} occurrences from "
        f"{when(entry.scheduled_at, zone)} to {when(entry.last_scheduled_at, zone)} that {why}, "
        f"dropped under the missed-run policy {policy} ({entry.fate.value}: {reason.value})."
    )
    return Answer("missed", text)


def _unrecorded(entries: Sequence[LedgerEntry], state: JobState, at: datetime, zone: ZoneInfo) -> Answer:
    next_run = state.next_run_at
    if next_run is not None and at >= next_run:
        if at == next_run:
            return Answer("not_yet_due", f"{when(at, zone)} is the next run: it is not due yet.")
        return Answer("not_yet_due", f"{when(at, zone)} is not due yet; the next run is {when(next_run, zone)}.")
    oldest = min(entries, key=lambda e: e.scheduled_at, default=None)
    newest = max(entries, key=lambda e: e.last_scheduled_at, default=None)
    if next_run is None and (newest is None or at > newest.last_scheduled_at):
        return Answer("finished", f"{when(at, zone)} never came: the job has nothing left to run.")
    if oldest is None or at < oldest.scheduled_at:
        complete = sum(e.count for e in entries) >= state.trigger_count
        if oldest is not None and complete:
            return Answer(
                "not_started",
                f"{when(at, zone)} is before the job's first occurrence on record ({when(oldest.scheduled_at, zone)}): "
                "the job was not running yet.",
            )
        first = f" (its oldest entry is {when(oldest.scheduled_at, zone)})" if oldest else ""
        return Answer("too_old", f"{when(at, zone)} is older than the ledger keeps{first}.")
    return Answer(
        "unrecorded",
        f"The occurrence of {when(at, zone)} has no ledger entry: the ledger was off then, or a skip "
        "recorded in the background was lost in a crash.",
    )
