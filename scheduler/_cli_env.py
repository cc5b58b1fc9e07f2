"""``SCHEDULER_<FLAG>`` environment variables and ``--state-file`` / ``--guard-file``.

Rules: a flag on the command line wins over its variable; giving any of ``--every``,
``--cron``, ``--at`` on the command line ignores all three variables, and two of them set in
the environment is a usage error; booleans accept 1/0/true/false (also yes/no, on/off);
``SCHEDULER_AT`` holds space-separated instants; the command itself never comes from the
environment. ``SCHEDULER_STATE_FILE`` / ``SCHEDULER_GUARD_FILE`` / ``SCHEDULER_PING_URL_FILE``
name a file holding the URL,
so that a password is in neither argv nor the environment.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from pathlib import Path

SCHEDULE_FLAGS = ("--every", "--cron", "--at")
#: Pairs of flags that say the same thing two ways (a URL, or a file holding it).
URL_FLAGS = {"--state": "--state-file", "--guard": "--guard-file", "--ping-url": "--ping-url-file"}
_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off", ""}
#: Flags that have no variable (help, version) or must come from argv only.
_NO_VARIABLE = {"--help", "--version"}


class EnvUsageError(Exception):
    """A variable that cannot be used (exit status 2)."""


def variable(flag: str) -> str:
    """``--lease-ttl`` -> ``SCHEDULER_LEASE_TTL``."""
    return "SCHEDULER_" + flag.lstrip("-").replace("-", "_").upper()


def _long_flags(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {
        option: action
        for action in parser._actions
        for option in action.option_strings
        if option.startswith("--") and option not in _NO_VARIABLE
    }


def _given(flag: str, argv: list[str]) -> bool:
    return any(arg == flag or arg.startswith(flag + "=") for arg in argv)


def from_environment(
    parser: argparse.ArgumentParser, argv: list[str], env: Mapping[str, str]
) -> tuple[list[str], dict[str, str]]:
    """The arguments the environment adds to ``argv`` for ``parser``'s flags, and for each
    added flag the variable it came from (so that an error can name the variable)."""
    flags = _long_flags(parser)
    added: list[str] = []
    origin: dict[str, str] = {}
    # A flag given either way (URL or file) on argv wins over both variables.
    shadowed = {flag for pair in URL_FLAGS.items() if any(_given(f, argv) for f in pair) for flag in pair}
    if any(_given(f, argv) for f in SCHEDULE_FLAGS):
        shadowed |= set(SCHEDULE_FLAGS)
    else:
        in_env = [variable(f) for f in SCHEDULE_FLAGS if f in flags and env.get(variable(f), "").strip()]
        if len(in_env) > 1:
            raise EnvUsageError(f"{' and '.join(in_env)} are both set: give only one schedule")
    for flag, action in flags.items():
        name = variable(flag)
        if flag in shadowed or _given(flag, argv) or name not in env:
            continue
        value = env[name]
        if action.nargs == 0:  # a switch: the variable says whether it is on
            word = value.strip().lower()
            if word not in _TRUE | _FALSE:
                raise EnvUsageError(f"{name}={value!r} is not a boolean: use 1/0/true/false")
            if word in _TRUE:
                added.append(flag)
        elif flag == "--at":
            added += [flag, *value.split()]
        elif not value.strip():
            continue  # an empty variable is unset (compose files often leave them empty)
        else:
            added.append(f"{flag}={value}")
        origin[flag] = name
    return added, origin


def read_url_file(path: str, flag: str) -> str:
    """The URL in file ``path`` (first non-empty line, surrounding space removed)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise EnvUsageError(f"{flag} {path!r} cannot be read: {exc.__class__.__name__}") from exc
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        raise EnvUsageError(f"{flag} {path!r} is empty: it must hold the URL")
    return lines[0]


def resolve_url_files(args: argparse.Namespace) -> None:
    """Replace each ``--*-file`` flag by the URL its file holds (in place)."""
    for url_flag, file_flag in URL_FLAGS.items():
        url_attr, file_attr = url_flag[2:].replace("-", "_"), file_flag[2:].replace("-", "_")
        path = getattr(args, file_attr, None)
        if path is not None:
            setattr(args, url_attr, read_url_file(path, file_flag))


def environment() -> Mapping[str, str]:
    return os.environ
