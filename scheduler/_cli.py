"""The ``scheduler`` command: ``run``, ``next``, ``status`` and ``reset`` (see docs/cli.md).

Exit status: 0 done (terminal, graceful stop, reset), 1 fatal error (store/guard unreachable,
lost lease, unknown job in ``status``), 2 bad usage (always ONE line on stderr),
128+signal when a second SIGINT/SIGTERM cancelled the run (130, 143).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import NoReturn

from ._cron import Cron
from ._duration import parse_duration
from ._errors import InvalidJobError, InvalidJobKind, SchedulerError, StoreError
from ._state import JobState
from ._store import InMemoryStateStore, StateStore
from ._time import to_zone
from ._valkey_common import is_valkey_url

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """Bad command line: printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    # argparse's default prints the whole usage block; operators get one line instead.
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


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
    if is_valkey_url(text):
        from ._valkey_store import open_valkey_store

        return open_valkey_store(text)
    raise InvalidJobError(
        InvalidJobKind.OTHER,
        f"unsupported state URL {redact(text)!r}: use sqlite:///path, memory:, valkey://, redis://, "
        "rediss://, valkey+cluster://, redis+cluster:// or resilient+valkey[+cluster]://",
    )


def _duration_arg(text: str) -> timedelta:
    try:
        return parse_duration(text)
    except InvalidJobError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _choice(values: Sequence[str]) -> Callable[[str], str]:
    def convert(text: str) -> str:
        value = text.strip().lower().replace("_", "-")
        if value not in values:
            raise argparse.ArgumentTypeError(f"{text!r} is not one of: {', '.join(values)}")
        return value.replace("-", "_")

    return convert


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= 0")
    return value


def build_parser() -> _Parser:
    parser = _Parser(prog="scheduler", description="Run ONE command on a schedule, restart-safe.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser, metavar="COMMAND")
    run = sub.add_parser("run", help="run a command on a schedule: scheduler run [options] -- COMMAND [ARGS...]")
    run.add_argument("--job-id", required=True, help="key of the persisted state")
    when = run.add_mutually_exclusive_group(required=True)
    when.add_argument("--every", type=_duration_arg, metavar="DURATION", help="interval: 90s, 5m, 1h30m, PT5M")
    when.add_argument("--cron", metavar="EXPR", help="cron expression, 5 or 6 fields, or @daily etc.")
    when.add_argument("--at", nargs="+", action="extend", metavar="ISO", help="explicit instants (ISO 8601)")
    run.add_argument("--timezone", default="UTC", metavar="TZ", help="zone for cron, windows, --at (default UTC)")
    run.add_argument("--missed", type=_choice(["skip", "catch-up-once", "replay-all"]), default="catch_up_once")
    run.add_argument("--overlap", type=_choice(["forbid", "queue-one", "allow-parallel", "replace"]), default="forbid")
    run.add_argument("--window", metavar="SPEC", help='e.g. "Mon-Fri 09:00-12:00,13:00-18:00"')
    run.add_argument("--max-runs", type=_non_negative, metavar="N")
    run.add_argument("--timeout", type=_duration_arg, metavar="DURATION")
    run.add_argument("--retries", type=_non_negative, default=0, metavar="N", help="extra attempts per occurrence")
    run.add_argument("--kill-grace", type=_duration_arg, metavar="DURATION", help="SIGTERM->SIGKILL (default 5s)")
    run.add_argument("--state", metavar="URL", help="sqlite:///path (default), memory:, valkey://...")
    run.add_argument("--guard", metavar="URL", help="valkey:// URL of the execution guard (leases)")
    run.add_argument("--lease-ttl", type=_duration_arg, metavar="DURATION", help="guard lease TTL (default 30s)")
    run.add_argument("--log-format", choices=["text", "json"], default="text")
    run.add_argument("--metrics-port", metavar="[HOST:]PORT", help="serve Prometheus metrics (host 127.0.0.1)")
    run.add_argument("--report", metavar="FILE", help="write the final report as JSON")
    nxt = sub.add_parser("next", help="preview the next occurrences of a cron expression")
    nxt.add_argument("--cron", required=True, metavar="EXPR")
    nxt.add_argument("--timezone", default="UTC", metavar="TZ")
    nxt.add_argument("-n", type=_non_negative, default=5, metavar="N", help="how many (default 5)")
    nxt.add_argument("--after", metavar="ISO", help="start from this instant instead of now")
    for name, text in (("status", "print the persisted state of a job"), ("reset", "delete a job's state")):
        cmd = sub.add_parser(name, help=text)
        cmd.add_argument("--job-id", required=True)
        cmd.add_argument("--state", metavar="URL")
        if name == "status":
            cmd.add_argument("--timezone", metavar="TZ", help="zone for local times (default: the system's)")
            cmd.add_argument("--json", action="store_true", help="print the JobState as JSON")
    return parser


def parse_instant(text: str, zone: str) -> datetime:
    """ISO 8601; a time without an offset is read in ``zone`` (the CLI's --timezone)."""
    try:
        value = datetime.fromisoformat(text.strip().replace("z", "Z").replace("Z", "+00:00"))
    except ValueError as exc:
        raise InvalidJobError(
            InvalidJobKind.OTHER, f"invalid instant {text!r}: use ISO 8601 like 2025-06-01T09:00+02:00"
        ) from exc
    return value if value.tzinfo is not None else value.replace(tzinfo=to_zone(zone))


def _fmt_local(value: datetime | None, zone: str | None) -> str:
    if value is None:
        return "-"
    local = value.astimezone(to_zone(zone)) if zone else value.astimezone()
    utc = value.astimezone(to_zone("UTC"))
    return f"{local:%Y-%m-%d %H:%M:%S %Z (UTC%z)}  =  {utc:%Y-%m-%dT%H:%M:%SZ}"


def cmd_next(args: argparse.Namespace) -> int:
    cron = Cron(args.cron, args.timezone)
    after = parse_instant(args.after, args.timezone) if args.after else None
    print(cron.explain())
    previous: datetime | None = None
    for instant in cron.preview(args.n, after=after, timezone=args.timezone):
        local = instant.astimezone(to_zone(args.timezone))
        note = "  (UTC offset changes)" if previous is not None and previous.utcoffset() != local.utcoffset() else ""
        print(f"{_fmt_local(instant, args.timezone)}{note}")
        previous = local
    return EXIT_OK


def _describe(state: JobState, zone: str | None) -> list[str]:
    outcome = state.last_status.value if state.last_status else "-"
    if state.last_error:
        outcome += f" ({state.last_error})"
    rows = [
        ("job", state.job_id),
        (
            "next run",
            _fmt_local(state.next_run_at, zone) if state.next_run_at else "none (terminal)",
        ),
        ("runs so far", str(state.trigger_count)),
        ("last run", _fmt_local(state.last_run_at, zone)),
        ("last success", _fmt_local(state.last_success_at, zone)),
        ("last outcome", outcome),
        ("consecutive failures", str(state.consecutive_failures)),
    ]
    return [f"{key + ':':<22}{value}" for key, value in rows]


async def _status_or_reset(args: argparse.Namespace, url: str) -> int:
    store = open_store(url)
    try:
        if args.command == "reset":
            await store.delete(args.job_id)
            print(f"deleted the state of job {args.job_id!r}")
            return EXIT_OK
        state = await store.load(args.job_id)
    finally:
        await store.aclose()
    if state is None:
        print(f"scheduler: no state stored for job {args.job_id!r} in {redact(url)}", file=sys.stderr)
        return EXIT_ERROR
    print(state.model_dump_json(indent=2) if args.json else "\n".join(_describe(state, args.timezone)))
    return EXIT_OK


def _dispatch(args: argparse.Namespace, command: list[str] | None) -> int:
    if args.command == "next":
        return cmd_next(args)
    if args.command == "run":
        from ._cli_run import run_command

        return run_command(args, command or [])
    url = args.state or default_state_url()
    try:
        return asyncio.run(_status_or_reset(args, url))
    except (StoreError, ImportError) as exc:
        print(f"scheduler: {scrub(str(exc), url)}", file=sys.stderr)
        return EXIT_ERROR


def _unknown_option(parser: _Parser, args: list[str]) -> str | None:
    """The first flag the chosen subcommand does not know (reported before missing ones)."""
    sub = next((a for a in args if a in {"run", "next", "status", "reset"}), None)
    actions = parser._subparsers._group_actions if parser._subparsers else []
    known: set[str] = set(parser._option_string_actions)
    for action in actions:
        choices = action.choices if isinstance(action.choices, dict) else {}
        if sub in choices:
            known |= set(choices[sub]._option_string_actions)
    for arg in args:
        flag = arg.partition("=")[0]
        if flag.startswith("-") and len(flag) > 1 and not flag[1].isdigit() and flag not in known:
            return arg
    return None


def _parse(args_list: list[str]) -> argparse.Namespace:
    parser = build_parser()
    try:
        return parser.parse_args(args_list)
    except UsageError:
        unknown = _unknown_option(parser, args_list)
        if unknown is not None:
            raise UsageError(f"unrecognized argument: {unknown}") from None
        raise


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``scheduler`` console script; returns the exit status."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    command: list[str] | None = None
    if "--" in args_list:  # everything after the first "--" is the wrapped command, verbatim
        split = args_list.index("--")
        args_list, command = args_list[:split], args_list[split + 1 :]
    try:
        args = _parse(args_list)
        if args.command == "run" and not command:
            raise UsageError("run needs the command to wrap after '--', e.g. scheduler run --every 5m -- echo hi")
        if args.command != "run" and command is not None:
            raise UsageError(f"'--' is only used by 'run', not by {args.command!r}")
        return _dispatch(args, command)
    except SystemExit as exc:  # --help and --version exit through argparse
        return exc.code if isinstance(exc.code, int) else EXIT_OK
    except (UsageError, InvalidJobError) as exc:
        message = " ".join(str(exc).split())  # one line, whatever the message contained
        print(f"scheduler: error: {message} (see scheduler --help)", file=sys.stderr)
        return EXIT_USAGE
    except SchedulerError as exc:
        print(f"scheduler: {' '.join(str(exc).split())}", file=sys.stderr)
        return EXIT_ERROR
