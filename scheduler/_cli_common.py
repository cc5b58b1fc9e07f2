"""What the ``scheduler`` command's parts share: exit statuses, usage errors, state URLs, times."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

from ._errors import InvalidJobError, InvalidJobKind
from ._store import InMemoryStateStore, StateStore
from ._time import to_zone

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """Bad command line: printed as one line, exit status 2."""


def default_state_url() -> str:
    """``sqlite:///$XDG_STATE_HOME/scheduler/state.db`` (fallback ``~/.local/state``)."""
    base = os.environ.get("XDG_STATE_HOME", "")
    root = Path(base) if base and Path(base).is_absolute() else Path.home() / ".local" / "state"
    return f"sqlite://{root / 'scheduler' / 'state.db'}"


def redact(url: str) -> str:
    """``url`` with any user or password masked (file and memory URLs carry none)."""
    if url.startswith(("sqlite:", "memory:")):
        return url
    from ._valkey_common import redact_url  # no redis import: plain URL handling only

    return redact_url(url)


def scrub(text: str, *urls: str | None) -> str:
    """``text`` with every credential of ``urls`` masked (errors may quote a raw URL)."""
    from ._valkey_common import scrub as _scrub
    from ._valkey_common import url_secrets

    for url in urls:
        if url:
            text = _scrub(text, url_secrets(url))
    return text


def open_store(url: str) -> StateStore:
    """A StateStore for a ``--state`` URL; InvalidJobError (usage) for an unknown scheme."""
    text = url.strip()
    scheme = text.partition(":")[0].lower()
    if text == "memory:":
        return InMemoryStateStore()
    if scheme == "sqlite":
        rest = text[len("sqlite:") :]
        path = rest[2:] if rest.startswith("//") else rest  # sqlite:///abs and sqlite:rel
        if not path:
            raise InvalidJobError(
                InvalidJobKind.OTHER, f"state URL {text!r} has no path: use sqlite:///path/to/state.db"
            )
        from ._sqlite import SqliteStateStore

        return SqliteStateStore(path)
    resilient = scheme.startswith("resilient+")
    inner = text[len("resilient+") :] if resilient else text
    if inner.partition(":")[0].lower() in {"valkey", "valkeys", "redis", "rediss"}:
        from ._valkey_store import ValkeyStateStore

        return ValkeyStateStore.resilient(inner) if resilient else ValkeyStateStore(inner)
    raise InvalidJobError(
        InvalidJobKind.OTHER,
        f"unsupported state URL {redact(text)!r}: use sqlite:///path, memory:, valkey://, redis://, "
        "rediss:// or resilient+valkey://",
    )


def parse_instant(text: str, zone: str) -> datetime:
    """ISO 8601; a time without an offset is read in ``zone`` (the CLI's --timezone)."""
    try:
        value = datetime.fromisoformat(text.strip().replace("z", "Z").replace("Z", "+00:00"))
    except ValueError as exc:
        raise InvalidJobError(
            InvalidJobKind.OTHER, f"invalid instant {text!r}: use ISO 8601 like 2025-06-01T09:00+02:00"
        ) from exc
    return value if value.tzinfo is not None else value.replace(tzinfo=to_zone(zone))


def fmt_local(value: datetime | None, zone: str | None) -> str:
    if value is None:
        return "-"
    local = value.astimezone(to_zone(zone)) if zone else value.astimezone()
    utc = value.astimezone(to_zone("UTC"))
    return f"{local:%Y-%m-%d %H:%M:%S %Z (UTC%z)}  =  {utc:%Y-%m-%dT%H:%M:%SZ}"
