"""Small helpers for aware datetimes, zones and durations (pure: no clock reads here)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ._errors import InvalidJobError, InvalidJobKind


def require_aware(value: datetime, what: str) -> datetime:
    """Return ``value`` in UTC; a naive datetime is an error, never assumed local."""
    if not isinstance(value, datetime):
        raise InvalidJobError(InvalidJobKind.OTHER, f"{what} must be a datetime, got {value!r}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidJobError(
            InvalidJobKind.NAIVE_DATETIME,
            f"{what} {value.isoformat()} is naive; pass a timezone-aware datetime",
        )
    return value.astimezone(UTC)


def to_zone(value: str | tzinfo | None, what: str = "timezone") -> ZoneInfo:
    """Resolve a zone name or ZoneInfo (``None`` means UTC)."""
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
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise InvalidJobError(
                InvalidJobKind.TIMEZONE, f"unknown {what} {name!r} (use an IANA name like 'Europe/Paris')"
            ) from exc
    raise InvalidJobError(InvalidJobKind.TIMEZONE, f"{what} must be a zone name or ZoneInfo, got {value!r}")


def to_timedelta(value: timedelta | float | int, what: str) -> timedelta:
    """Accept a timedelta or a number of seconds."""
    if isinstance(value, bool):
        raise InvalidJobError(InvalidJobKind.OTHER, f"{what} must be a duration, got {value!r}")
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int | float):
        try:
            return timedelta(seconds=value)
        except (OverflowError, ValueError) as exc:
            raise InvalidJobError(InvalidJobKind.OTHER, f"{what} {value!r} is out of range") from exc
    raise InvalidJobError(InvalidJobKind.OTHER, f"{what} must be a timedelta or seconds, got {value!r}")


def format_utc(value: datetime) -> str:
    """RFC 3339 in UTC with a ``Z`` suffix and microseconds."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def format_utc_nanos(value: datetime) -> str:
    """RFC 3339 in UTC with 9 fractional digits (the Valkey key format)."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "000Z"
