"""A ledger entry's stored text is written directly, as ``json.dumps`` writes its ``to_dict``."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from scheduler import RunSkipReason, TriggerSource
from scheduler._ledger import LedgerEntry, LedgerFate

texts = st.text(st.characters(codec="utf-8"), max_size=12)
zones = st.sampled_from([UTC, timezone(timedelta(hours=-3))])
instants = st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=zones)
ints = st.integers(min_value=-(2**70), max_value=2**70)


# Built once, not per example: building a strategy costs more than drawing from it.
fates = st.sampled_from(LedgerFate)
reasons = st.sampled_from(RunSkipReason)
counts = st.integers(min_value=1, max_value=2**40)
sources = st.sampled_from(TriggerSource)
optional_instants = st.none() | instants
optional_texts = st.none() | texts
optional_ints = st.none() | ints


@st.composite
def entries(draw: st.DrawFn) -> LedgerEntry:
    first = draw(instants)
    fate = draw(fates)
    return LedgerEntry(
        job_id=draw(texts),
        scheduled_at=first,
        fate=fate,
        reason=draw(reasons if fate in (LedgerFate.SKIPPED, LedgerFate.MISSED) else st.none()),
        count=draw(counts),
        last_scheduled_at=draw(st.none() | st.just(first) | st.just(first.astimezone(UTC) + timedelta(seconds=5))),
        source=draw(sources),
        catch_up=draw(st.booleans()),
        started_at=draw(optional_instants),
        finished_at=draw(optional_instants),
        attempts=draw(ints),
        error=draw(optional_texts),
        exit_code=draw(optional_ints),
        fencing_token=draw(optional_ints),
        instance=draw(texts),
    )


def _reference(entry: LedgerEntry) -> str:
    return json.dumps(entry.to_dict(), separators=(",", ":"))


@settings(max_examples=500, deadline=None)
@given(entries())
def test_the_text_is_json_dumps_of_to_dict(entry: LedgerEntry) -> None:
    assert entry.to_json() == _reference(entry)
    assert LedgerEntry.from_dict(json.loads(entry.to_json())) == entry


def test_values_of_other_types_read_from_a_stored_entry_go_through_json_dumps() -> None:
    stored: dict[str, Any] = {"job_id": "j", "scheduled_at": "2026-01-01T00:00:00Z", "fate": "failed"}
    for odd in ({"exit_code": 1.5}, {"fencing_token": "7"}, {"error": ["x"]}, {"exit_code": True}):
        entry = LedgerEntry.from_dict({**stored, **odd})
        assert entry.to_json() == _reference(entry)
