"""Text forms used by the CLI: durations (``90s``, ``1h30m``, ``PT5M``) and time windows.

Both parsers raise :class:`InvalidJobError` (a ``ValueError``) with a message that quotes the
offending text, so the CLI can print it as its one-line usage error.
"""

from __future__ import annotations

import re
from datetime import timedelta

from ._errors import InvalidJobError, InvalidJobKind
from ._window import JobTimeWindow, TimeWindowSegment, Weekday

_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)"
# Units longest-first so "ms" is not read as "m" followed by garbage.
_PART = re.compile(rf"({_NUMBER})(ms|s|m|h|d|w)", re.IGNORECASE)
_COMPACT = re.compile(rf"(?:{_NUMBER}(?:ms|s|m|h|d|w))+", re.IGNORECASE)
_ISO = re.compile(
    rf"P(?:({_NUMBER})W)?(?:({_NUMBER})D)?(?:T(?:({_NUMBER})H)?(?:({_NUMBER})M)?(?:({_NUMBER})S)?)?",
    re.IGNORECASE,
)
_DURATION_HELP = "use e.g. 250ms, 0.5s, 90s, 5m, 1h30m or ISO 8601 PT5M"


def parse_duration(text: str) -> timedelta:
    """Parse ``250ms``, ``0.5s``, ``90s``, ``5m``, ``1h30m``, ``2d``, ``1w`` or ISO 8601 ``PT1H30M``.

    A bare number is seconds. Units combine largest-first or in any order (``1h30m``,
    ``30m1h`` are the same). ISO 8601 years and months are refused: their length varies.
    """
    raw = text.strip()
    bad = InvalidJobError(InvalidJobKind.OTHER, f"invalid duration {text!r}: {_DURATION_HELP}")
    if not raw:
        raise bad
    seconds: float
    if re.fullmatch(_NUMBER, raw):
        seconds = float(raw)
    elif _COMPACT.fullmatch(raw):
        seconds = sum(float(n) * _UNIT_SECONDS[u.lower()] for n, u in _PART.findall(raw))
    else:
        iso = _ISO.fullmatch(raw)
        if iso is None or not any(iso.groups()) or raw.upper().endswith("T"):
            raise bad
        weeks, days, hours, minutes, secs = (float(g) if g else 0.0 for g in iso.groups())
        seconds = weeks * 604800 + days * 86400 + hours * 3600 + minutes * 60 + secs
    try:
        return timedelta(seconds=seconds)
    except OverflowError as exc:
        raise InvalidJobError(InvalidJobKind.OTHER, f"duration {text!r} is out of range") from exc


def format_duration(value: timedelta) -> str:
    """The compact form ``parse_duration`` reads back: ``1h30m``, ``250ms``."""
    total_ms = round(value.total_seconds() * 1000)
    if total_ms == 0:
        return "0s"
    out = []
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1)):
        count, total_ms = divmod(total_ms, size)
        if count:
            out.append(f"{count}{unit}")
    return "".join(out)


def _parse_days(token: str) -> list[Weekday]:
    days: list[Weekday] = []
    for part in token.split(","):
        if not part:
            raise InvalidJobError(InvalidJobKind.TIME_WINDOW, f"empty weekday in {token!r}")
        if "-" in part:
            first_text, _, last_text = part.partition("-")
            first, last = Weekday.parse(first_text), Weekday.parse(last_text)
            # A range may wrap the week end: Fri-Mon is Fri, Sat, Sun, Mon.
            span = (last - first) % 7
            days.extend(Weekday((first + i) % 7) for i in range(span + 1))
        else:
            days.append(Weekday.parse(part))
    return days


def _parse_segments(token: str) -> list[TimeWindowSegment]:
    segments = []
    for part in token.split(","):
        start, sep, end = part.partition("-")
        if not sep or not start or not end:
            raise InvalidJobError(
                InvalidJobKind.TIME_WINDOW, f"time range {part!r} must look like HH:MM-HH:MM (e.g. 09:00-17:30)"
            )
        segments.append(TimeWindowSegment(start, end))
    return segments


def parse_window(text: str, timezone: str | None = None) -> JobTimeWindow:
    """Parse ``"Mon-Fri 09:00-12:00,13:00-18:00"`` into a :class:`JobTimeWindow`.

    Whitespace-separated parts, each optional, in any order: weekdays (``Mon-Fri``,
    ``Sat,Sun``, wrapping ``Fri-Mon``), time ranges (``22:00-02:00`` crosses midnight), and an
    IANA zone (``Europe/Paris`` or ``UTC``; otherwise ``timezone``, then the scheduler's zone).
    """
    days: list[Weekday] = []
    segments: list[TimeWindowSegment] = []
    zone = timezone
    tokens = text.split()
    if not tokens:
        raise InvalidJobError(InvalidJobKind.TIME_WINDOW, "time window is empty: use e.g. 'Mon-Fri 09:00-17:00'")
    for token in tokens:
        if token[0].isdigit():
            segments.extend(_parse_segments(token))
        elif "/" in token or token.upper() in {"UTC", "GMT"}:
            zone = token
        else:
            days.extend(_parse_days(token))
    return JobTimeWindow(timezone=zone, weekdays=days, segments=segments)
