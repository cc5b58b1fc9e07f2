"""Small helpers for aware datetimes, zones and durations (pure: no clock reads here)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, tzinfo
from typing import TYPE_CHECKING

from ._errors import InvalidJobError, InvalidJobKind, InvalidJobTypeError

if TYPE_CHECKING:
    from zoneinfo import ZoneInfo

#: Longest duration any setting accepts: far beyond any schedule, short enough that adding it
#: to "now" never overflows what ``datetime`` can hold.
MAX_DURATION = timedelta(days=3650)
#: Zone names are file names in the tz database; longer ones are never valid.
MAX_ZONE_NAME = 255


def wrong_type(what: str, expected: str, value: object, kind: InvalidJobKind = InvalidJobKind.OTHER) -> InvalidJobError:
    """The error for a parameter of the wrong type (a TypeError and an InvalidJobError)."""
    shown = repr(value)
    if len(shown) > 80:
        shown = shown[:77] + "..."
    return InvalidJobTypeError(kind, f"{what} must be {expected}, got {type(value).__name__} {shown}")


def require_aware(value: datetime, what: str) -> datetime:
    """Return ``value`` in UTC; a naive datetime is an error, never assumed local."""
    if not isinstance(value, datetime):
        raise wrong_type(what, "a timezone-aware datetime", value)
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidJobError(
            InvalidJobKind.NAIVE_DATETIME,
            f"{what} {value.isoformat()} is naive; pass a timezone-aware datetime",
        )
    try:
        return value.astimezone(UTC)
    except OverflowError as exc:  # year 1 east of UTC, year 9999 west of it
        raise InvalidJobError(InvalidJobKind.OTHER, f"{what} {value.isoformat()} is out of range in UTC") from exc


def to_zone(value: str | tzinfo | None, what: str = "timezone") -> ZoneInfo:
    """Resolve a zone name or ZoneInfo (``None`` means UTC)."""
    # Imported here: zoneinfo loads sysconfig, a cost ``import scheduler`` should not pay.
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    if value is None:
        return ZoneInfo("UTC")
    if isinstance(value, ZoneInfo):
        return value
    if value is UTC:
        return ZoneInfo("UTC")
    if isinstance(value, str):
        name = value.strip()
        if not name:
            raise InvalidJobError(InvalidJobKind.TIMEZONE, f"{what} must not be empty")
        unknown = InvalidJobError(
            InvalidJobKind.TIMEZONE, f"unknown {what} {name[:80]!r} (use an IANA name like 'Europe/Paris')"
        )
        if len(name) > MAX_ZONE_NAME or not name.isprintable():
            raise unknown
        try:
            return ZoneInfo(name)
        # A folder of the database ("America") or an unreadable name surfaces as OSError.
        except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
            raise unknown from exc
    raise wrong_type(what, "a zone name or ZoneInfo", value, InvalidJobKind.TIMEZONE)


def to_timedelta(value: timedelta | float | int, what: str) -> timedelta:
    """Accept a timedelta or a finite number of seconds."""
    if isinstance(value, bool) or not isinstance(value, timedelta | int | float):
        raise wrong_type(what, "a timedelta or a number of seconds", value)
    if isinstance(value, timedelta):
        return value
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidJobError(InvalidJobKind.OTHER, f"{what} {value!r} is not a finite number of seconds")
    try:
        return timedelta(seconds=value)
    except (OverflowError, ValueError) as exc:
        raise InvalidJobError(InvalidJobKind.OTHER, f"{what} {value!r} is out of range") from exc


def bounded_duration(value: timedelta | float | int, what: str, *, allow_zero: bool = True) -> timedelta:
    """``to_timedelta`` plus the range every setting shares: >= 0 (or > 0), at most MAX_DURATION."""
    result = to_timedelta(value, what)
    if result < timedelta(0) or (not allow_zero and result == timedelta(0)):
        raise InvalidJobError(InvalidJobKind.OTHER, f"{what} must be {'>=' if allow_zero else '>'} 0, got {result}")
    if result > MAX_DURATION:
        raise InvalidJobError(InvalidJobKind.OTHER, f"{what} {result} is longer than {MAX_DURATION.days} days")
    return result


def require_int(value: object, what: str, minimum: int) -> int:
    """An ``int`` (not a bool) of at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise wrong_type(what, "an int", value)
    if value < minimum:
        raise InvalidJobError(InvalidJobKind.OTHER, f"{what} must be >= {minimum}, got {value}")
    return value


def format_utc(value: datetime) -> str:
    """RFC 3339 in UTC with a ``Z`` suffix and microseconds."""
    if value.tzinfo is UTC:
        # A run formats the same few instants several times (its states, ledger entry and
        # keys share them): recent ones are remembered. Equal UTC instants have one text.
        text = _FORMATTED.get(value)
        if text is None:
            if len(_FORMATTED) >= _FORMATTED_MAX:
                _FORMATTED.clear()
            text = _FORMATTED[value] = _utc_digits(value) + "Z"
        return text
    return _utc_digits(value) + "Z"


#: Texts of recently formatted instants (cleared when full: a run needs only the last few).
_FORMATTED: dict[datetime, str] = {}
_FORMATTED_MAX = 64


def format_utc_nanos(value: datetime) -> str:
    """RFC 3339 in UTC with 9 fractional digits (the Valkey key format)."""
    return format_utc(value)[:-1] + "000Z"


def _utc_digits(value: datetime) -> str:
    """``YYYY-MM-DDTHH:MM:SS.ffffff`` in UTC, the year always four digits.

    The instants of a run fall in the same second or a few: the text up to the fraction is
    remembered per second, and only the six fraction digits are written (about half the cost
    of ``isoformat``, which formats all seven numbers and the offset every time).
    """
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    second = (value.year, value.month, value.day, value.hour, value.minute, value.second)
    start = _SECONDS.get(second)
    if start is None:
        if len(_SECONDS) >= _FORMATTED_MAX:
            _SECONDS.clear()
        year, month, day, hour, minute, sec = second
        start = _SECONDS[second] = f"{year:04d}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:{sec:02d}."
    return start + str(1_000_000 + value.microsecond)[1:]  # six digits, leading zeros kept


#: ``YYYY-MM-DDTHH:MM:SS.`` of recently formatted seconds (cleared when full).
_SECONDS: dict[tuple[int, int, int, int, int, int], str] = {}
