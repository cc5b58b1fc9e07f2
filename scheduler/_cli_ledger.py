"""``scheduler history``, ``scheduler explain`` and ``scheduler status``: reading a job's record."""

from __future__ import annotations

import argparse
import json
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from ._cli_common import EXIT_ERROR, EXIT_OK, UsageError, open_store, redact
from ._errors import InvalidJobError
from ._explain import explain, is_wall_time, job_zone, readings, when
from ._ledger import LedgerEntry, LedgerFate, RunLedger
from ._state import JobState
from ._time import to_zone

#: ``explain`` reads at most this many entries (the ledger keeps 1000 per job by default).
MAX_EXPLAIN_ENTRIES = 1_000_000


class UnknownJob(Exception):
    """No state and no ledger entry for the job (exit status 1)."""


def _zone(args: argparse.Namespace, state: JobState | None) -> ZoneInfo:
    if getattr(args, "timezone", None):
        return to_zone(args.timezone)
    return job_zone(state.schedule_spec if state else None)


async def _load(
    args: argparse.Namespace, url: str, limit: int, **query: Any
) -> tuple[JobState | None, list[LedgerEntry]]:
    store = open_store(url)
    try:
        state = await store.load(args.job_id)
        entries = await store.history(args.job_id, limit=limit, **query) if isinstance(store, RunLedger) else []
    finally:
        await store.aclose()
    if state is None and not entries:
        raise UnknownJob(f"no state and no ledger entries for job {args.job_id!r} in {redact(url)}")
    return state, entries


def _duration(entry: LedgerEntry) -> str:
    seconds = entry.duration_seconds
    return "-" if seconds is None else f"{seconds:.3f}s" if seconds < 10 else f"{seconds:.1f}s"


def history_line(entry: LedgerEntry, zone: ZoneInfo) -> str:
    """One entry: local and UTC time, fate, reason, attempts, duration, exit code or error, instance."""
    fate = entry.fate.value if entry.count == 1 else f"{entry.fate.value} x{entry.count}"
    until = f" until {when(entry.last_scheduled_at, zone)}" if entry.count > 1 else ""
    outcome = f"exit={entry.exit_code}" if entry.exit_code is not None else ""
    if entry.error and entry.fate is not LedgerFate.SUCCESS:
        outcome = (outcome + " " if outcome else "") + "error=" + json.dumps(" ".join(entry.error.split())[:120])
    parts = [
        when(entry.scheduled_at, zone) + until,
        f"{fate:<12}",
        f"reason={entry.reason.value if entry.reason else '-'}",
        f"attempts={entry.attempts}",
        f"duration={_duration(entry)}",
        outcome or "-",
        f"instance={entry.instance or '-'}",
    ]
    if entry.source.value == "manual":
        parts.insert(2, "manual")
    return "  ".join(parts)


async def cmd_history(args: argparse.Namespace, url: str) -> int:
    since = _instant(args.since, args, None) if args.since else None
    fates = [LedgerFate(args.fate)] if args.fate else None
    state, entries = await _load(args, url, args.n, after=since, fates=fates)
    if args.json:
        print(json.dumps([entry.to_dict() for entry in entries], indent=2))
        return EXIT_OK
    zone = _zone(args, state)
    if not entries:
        print(f"no ledger entries for job {args.job_id!r}" + (" matching the filters" if since or fates else ""))
    for entry in entries:
        print(history_line(entry, zone))
    return EXIT_OK


def _instant(text: str, args: argparse.Namespace, zone: ZoneInfo | None) -> datetime:
    try:
        value = datetime.fromisoformat(text.strip().replace("z", "Z").replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(
            f"invalid time {text!r}: use ISO 8601 like 2025-06-01T03:00 or 2025-06-01T03:00+02:00"
        ) from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=zone or (to_zone(args.timezone) if args.timezone else ZoneInfo("UTC")))
    return value


async def cmd_explain(args: argparse.Namespace, url: str) -> int:
    try:
        local = datetime.fromisoformat(args.at.strip().replace("z", "Z").replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(
            f"invalid --at {args.at!r}: use ISO 8601 like 2025-06-01T03:00 (in --timezone) or with an offset"
        ) from None
    state, entries = await _load(args, url, MAX_EXPLAIN_ENTRIES)
    if state is None:  # entries without a state (reset): answer from the ledger alone
        state = JobState(job_id=args.job_id, next_run_at=None)
    zone = _zone(args, state)
    instants = readings(local, zone)
    lines = []
    if local.tzinfo is None and len(instants) > 1:
        what = "does not exist (clocks jumped forward)" if not is_wall_time(local, zone) else "happens twice"
        lines.append(f"{local:%Y-%m-%d %H:%M:%S} in {zone.key} {what}; for each instant it can mean:")
    for instant in instants:
        lines.append(explain(state.schedule_spec, entries, state, instant, zone).text)
    print("\n".join(lines))
    return EXIT_OK


def status_lines(state: JobState, zone: ZoneInfo) -> list[str]:
    outcome = state.last_status.value if state.last_status else "-"
    if state.last_error:
        outcome += f" ({state.last_error})"
    skips = sum(state.skips.values())
    by_reason = ", ".join(f"{reason} {count}" for reason, count in sorted(state.skips.items()) if count)
    last_skip = "-"
    if state.last_skip_at is not None:
        reason = state.last_skip_reason.value if state.last_skip_reason else "-"
        last_skip = f"{when(state.last_skip_at, zone)}: {reason}"
    spec = state.schedule_spec or {}

    def at(value: datetime | None) -> str:
        return when(value, zone) if value is not None else "-"

    rows = [
        ("job", state.job_id),
        ("schedule", spec.get("description", "-")),
        ("next run", at(state.next_run_at) if state.next_run_at else "none (terminal)"),
        ("occurrences consumed", str(state.trigger_count)),
        ("runs started", str(state.runs_started)),
        ("skipped", f"{skips} ({by_reason})" if by_reason else str(skips)),
        ("interrupted", str(state.interrupted)),
        ("last skip", last_skip),
        ("last run", at(state.last_run_at)),
        ("last success", at(state.last_success_at)),
        ("last outcome", outcome),
        ("consecutive failures", str(state.consecutive_failures)),
    ]
    return [f"{key + ':':<22}{value}" for key, value in rows]


async def cmd_status(args: argparse.Namespace, url: str) -> int:
    store = open_store(url)
    try:
        state = await store.load(args.job_id)
    finally:
        await store.aclose()
    if state is None:
        raise UnknownJob(f"no state stored for job {args.job_id!r} in {redact(url)}")
    if args.json:
        print(state.model_dump_json(indent=2))
    else:
        print("\n".join(status_lines(state, _zone(args, state))))
    return EXIT_OK


def fate_choice(text: str) -> str:
    value = text.strip().lower().replace("-", "_")
    if value not in {f.value for f in LedgerFate}:
        raise argparse.ArgumentTypeError(f"{text!r} is not one of: {', '.join(f.value for f in LedgerFate)}")
    return value


__all__ = ["EXIT_ERROR", "InvalidJobError", "UnknownJob", "cmd_explain", "cmd_history", "cmd_status", "fate_choice"]
