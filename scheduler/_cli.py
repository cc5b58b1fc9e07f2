"""The ``scheduler`` command: ``run``, ``check``, ``next``, ``status``, ``history``, ``explain`` and
``reset`` (see docs/cli.md).

Exit status: 0 done (terminal, graceful stop, reset), 1 fatal error (store/guard unreachable,
lost lease, unknown job in ``status``/``history``/``explain``), 2 bad usage (always ONE line on stderr),
128+signal when a second SIGINT/SIGTERM/SIGHUP cancelled the run (130, 143, 129).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, NoReturn

from ._cli_common import (
    EXIT_ERROR,
    EXIT_OK,
    EXIT_USAGE,
    UsageError,
    default_state_url,
    fmt_local,
    open_store,
    parse_instant,
    redact,
    scrub,
)
from ._cli_env import EnvUsageError, environment, from_environment, resolve_url_files
from ._clock import SystemClock
from ._cron import Cron
from ._duration import parse_duration
from ._errors import InvalidJobError, SchedulerError, StoreError
from ._job import check_job_id
from ._time import MAX_DURATION, to_zone


class _Formatter(argparse.HelpFormatter):
    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=34, width=100)


class _Parser(argparse.ArgumentParser):
    """No abbreviated long flags (``--ever`` is not ``--every``), wide help, one-line errors."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        kwargs.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **kwargs)

    # argparse's default prints the whole usage block; operators get one line instead.
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def _duration_arg(text: str) -> timedelta:
    try:
        value = parse_duration(text)
    except InvalidJobError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc
    if value > MAX_DURATION:
        raise argparse.ArgumentTypeError(f"duration {text!r} is longer than {MAX_DURATION.days} days")
    return value


def _job_id_arg(text: str) -> str:
    """The same rules as ``Job``: checked before any store sees the id."""
    try:
        return check_job_id(text, "--job-id")
    except InvalidJobError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _positive_duration(text: str) -> timedelta:
    value = _duration_arg(text)
    if value <= timedelta(0):
        raise argparse.ArgumentTypeError(f"{text!r} must be longer than 0")
    return value


def _choice(values: Sequence[str]) -> Callable[[str], str]:
    def convert(text: str) -> str:
        value = text.strip().lower().replace("_", "-")
        if value not in values:
            raise argparse.ArgumentTypeError(f"{text!r} is not one of: {', '.join(values)}")
        return value.replace("-", "_")

    return convert


def _count(limit: int) -> Callable[[str], int]:
    def convert(text: str) -> int:
        stripped = text.strip()
        value = int(stripped) if stripped.isascii() and stripped.isdigit() and len(stripped) <= 19 else -1
        if not 0 <= value <= limit:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number from 0 to {limit}")
        return value

    return convert


#: Largest ``--max-runs`` / ``--retries``: far beyond any real use, and it fits everywhere.
MAX_COUNT = 2**53
#: Most occurrences ``scheduler next`` lists.
MAX_PREVIEW_LINES = 1000
#: Most entries ``scheduler history`` lists.
MAX_HISTORY_LINES = 100_000
LOG_LEVELS = ("debug", "info", "warning", "error")
RUN_USAGE = "scheduler %(cmd)s [options] (--every DURATION | --cron EXPR | --at ISO [ISO ...]) -- COMMAND [ARGS...]"


def _choices(values: Sequence[str]) -> str:
    return "{" + ",".join(values) + "}"


def add_run_options(run: argparse.ArgumentParser) -> None:
    """The flags of ``run`` and ``check`` (each also readable from ``SCHEDULER_<FLAG>``)."""
    job = run.add_argument_group("job")
    job.add_argument(
        "--job-id", required=True, type=_job_id_arg, metavar="ID", help="key of the persisted state (required)"
    )
    when = job.add_mutually_exclusive_group(required=True)
    when.add_argument("--every", type=_positive_duration, metavar="DURATION", help="interval: 90s, 5m, 1h30m, PT5M")
    when.add_argument("--cron", metavar="EXPR", help="cron expression, 5 or 6 fields, or @daily etc.")
    when.add_argument("--at", nargs="+", action="extend", metavar="ISO", help="explicit instants (ISO 8601)")
    job.add_argument("--timezone", default="UTC", metavar="TZ", help="zone for cron, windows, --at (default: UTC)")
    missed = ["skip", "catch-up-once", "replay-all"]
    job.add_argument("--missed", type=_choice(missed), default="catch_up_once", metavar=_choices(missed),
                     help="occurrences that fell due while nothing ran (default: catch-up-once)")  # fmt: skip
    overlap = ["forbid", "queue-one", "allow-parallel", "replace"]
    job.add_argument("--overlap", type=_choice(overlap), default="forbid", metavar=_choices(overlap),
                     help="a trigger while the command still runs (default: forbid)")  # fmt: skip
    job.add_argument("--window", metavar="WINDOW", help='when runs may start, e.g. "Mon-Fri 09:00-12:00,13:00-18:00"')
    job.add_argument("--max-runs", type=_count(MAX_COUNT), metavar="N", help="stop after N occurrences (default: none)")
    job.add_argument("--timeout", type=_positive_duration, metavar="DURATION", help="per attempt (default: none)")
    job.add_argument("--retries", type=_count(10_000), default=0, metavar="N",
                     help="extra attempts per occurrence (default: 0)")  # fmt: skip
    job.add_argument("--kill-grace", type=_duration_arg, metavar="DURATION",
                     help="SIGTERM -> SIGKILL delay on timeout/cancel (default: 5s)")  # fmt: skip
    job.add_argument("--jitter", type=_duration_arg, metavar="DURATION",
                     help="delay each start by a stable amount in [0, DURATION) (default: 0s)")  # fmt: skip
    job.add_argument("--run-on-start", action="store_true", help="run once as soon as the state is loaded")
    policy = run.add_argument_group("policies")
    policy.add_argument("--misfire-grace", type=_duration_arg, metavar="DURATION",
                        help="how late a start still counts as on time (default: 1s)")  # fmt: skip
    policy.add_argument("--catch-up-window", type=_duration_arg, metavar="DURATION",
                        help="drop due occurrences older than this (default: none)")  # fmt: skip
    lost = ["shutdown", "cancel-run", "continue"]
    policy.add_argument("--on-lease-lost", type=_choice(lost), default="shutdown", metavar=_choices(lost),
                        help="the guard lease of a running command is lost (default: shutdown)")  # fmt: skip
    guard_error = ["fail", "skip", "run"]
    policy.add_argument("--on-guard-error", type=_choice(guard_error), default="fail", metavar=_choices(guard_error),
                        help="the guard cannot be reached to start a run (default: fail)")  # fmt: skip
    policy.add_argument("--resume-interrupted", action="store_true",
                        help="re-run an occurrence a crash interrupted (default: off, at most once)")  # fmt: skip
    terminal = ["retain", "delete"]
    policy.add_argument("--terminal", type=_choice(terminal), default="retain", metavar=_choices(terminal),
                        help="stored state once the job has nothing left to run (default: retain)")  # fmt: skip
    where = run.add_argument_group("state and guard")
    state = where.add_mutually_exclusive_group()
    state.add_argument("--state", metavar="URL", help="sqlite:///path (default), memory:, valkey://...")
    state.add_argument("--state-file", metavar="FILE", help="read the --state URL from FILE")
    guard = where.add_mutually_exclusive_group()
    guard.add_argument("--guard", metavar="URL", help="valkey:// URL of the execution guard (default: none)")
    guard.add_argument("--guard-file", metavar="FILE", help="read the --guard URL from FILE")
    where.add_argument(
        "--lease-ttl", type=_positive_duration, metavar="DURATION", help="guard lease TTL (default: 30s)"
    )
    where.add_argument("--ledger-limit", type=_count(10**9), default=1000, metavar="N",
                       help="ledger entries kept per job, 0: no ledger (default: 1000)")  # fmt: skip
    where.add_argument("--startup-timeout", type=_duration_arg, default=timedelta(seconds=30), metavar="DURATION",
                       help="wait this long for an unreachable store or guard at start (default: 30s)")  # fmt: skip
    out = run.add_argument_group("output")
    out.add_argument("--log-format", type=_choice(["text", "json"]), default="text", metavar="{text,json}",
                     help="log lines as text or one JSON object each (default: text)")  # fmt: skip
    out.add_argument("--log-level", type=_choice(LOG_LEVELS), default="info", metavar=_choices(LOG_LEVELS),
                     help="debug adds tracebacks (default: info)")  # fmt: skip
    out.add_argument("--metrics-port", metavar="[HOST:]PORT",
                     help="serve /metrics, /healthz and /readyz (host 127.0.0.1)")  # fmt: skip
    out.add_argument("--health-lag", type=_positive_duration, metavar="DURATION",
                     help="/healthz fails once the event loop is this late (default: 5s)")  # fmt: skip
    ping = out.add_mutually_exclusive_group()
    ping.add_argument("--ping-url", metavar="URL",
                      help="ping URL/start, URL, URL/fail (healthchecks.io style) per run (default: none)")  # fmt: skip
    ping.add_argument("--ping-url-file", metavar="FILE", help="read the --ping-url URL from FILE")
    out.add_argument("--report", metavar="FILE", help="write the final report as JSON")


def _state_options(cmd: argparse.ArgumentParser) -> None:
    state = cmd.add_mutually_exclusive_group()
    state.add_argument("--state", metavar="URL", help="state URL (default: the SQLite file under $XDG_STATE_HOME)")
    state.add_argument("--state-file", metavar="FILE", help="read the --state URL from FILE")


COMMANDS = ("run", "check", "next", "status", "history", "explain", "reset")


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("scheduler-runner")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "unknown"


def build_parser() -> _Parser:
    parser = _Parser(
        prog="scheduler", description="Run ONE command on a schedule, restart-safe.",
        epilog="Every run/check flag can also be set as SCHEDULER_<FLAG> (e.g. SCHEDULER_STATE). See docs/cli.md.",
    )  # fmt: skip
    parser.add_argument("--version", action="version", version=f"scheduler {version()}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser, metavar="COMMAND")
    for name, text in (
        ("run", "run a command on a schedule"),
        ("check", "run every start-up check, print the next occurrences, run nothing"),
    ):
        cmd = sub.add_parser(name, help=text, description=text, usage=RUN_USAGE % {"cmd": name})
        add_run_options(cmd)
    nxt = sub.add_parser("next", help="preview the next occurrences of a cron expression")
    nxt.add_argument("--cron", required=True, metavar="EXPR", help="cron expression (required)")
    nxt.add_argument("--timezone", default="UTC", metavar="TZ", help="zone of the expression (default: UTC)")
    nxt.add_argument("-n", type=_count(MAX_PREVIEW_LINES), default=5, metavar="N",
                     help=f"how many, at most {MAX_PREVIEW_LINES} (default: 5)")  # fmt: skip
    nxt.add_argument("--after", metavar="ISO", help="start after this instant (default: now)")
    for name, text in (("status", "print the persisted state of a job"), ("reset", "delete a job's state")):
        cmd = sub.add_parser(name, help=text)
        cmd.add_argument("--job-id", required=True, type=_job_id_arg, metavar="ID", help="the job (required)")
        _state_options(cmd)
        if name == "status":
            cmd.add_argument("--timezone", metavar="TZ", help="zone for local times (default: the job's)")
            cmd.add_argument("--json", action="store_true", help="print the JobState as JSON")
    from ._cli_ledger import fate_choice

    text = "list what happened to each occurrence, newest first"
    hist = sub.add_parser("history", help=text, description=text)
    hist.add_argument("--job-id", required=True, type=_job_id_arg, metavar="ID", help="the job (required)")
    hist.add_argument("-n", type=_count(MAX_HISTORY_LINES), default=20, metavar="N",
                      help=f"how many entries, at most {MAX_HISTORY_LINES} (default: 20)")  # fmt: skip
    hist.add_argument("--since", metavar="ISO", help="only occurrences at or after this time")
    fates = "success, failed, timed_out, cancelled, skipped, missed, interrupted"
    hist.add_argument("--fate", type=fate_choice, metavar="FATE", help=f"only this fate: {fates}")
    hist.add_argument("--timezone", metavar="TZ", help="zone for local times and --since (default: the job's)")
    hist.add_argument("--json", action="store_true", help="print the entries as a JSON array")
    _state_options(hist)
    text = "say in plain words what happened to the occurrence at a given time"
    expl = sub.add_parser("explain", help=text, description=text)
    expl.add_argument("--job-id", required=True, type=_job_id_arg, metavar="ID", help="the job (required)")
    expl.add_argument("--at", required=True, metavar="TIME", help="ISO 8601, with an offset or local in --timezone")
    expl.add_argument("--timezone", metavar="TZ", help="zone of a TIME without offset (default: the job's)")
    _state_options(expl)
    return parser


def cmd_next(args: argparse.Namespace) -> int:
    cron = Cron(args.cron, args.timezone)
    after = parse_instant(args.after, args.timezone) if args.after else SystemClock().now()
    print(cron.explain())
    previous: datetime | None = None
    for instant in cron.preview(args.n, after=after, timezone=args.timezone):
        local = instant.astimezone(to_zone(args.timezone))
        note = "  (UTC offset changes)" if previous is not None and previous.utcoffset() != local.utcoffset() else ""
        print(f"{fmt_local(instant, args.timezone)}{note}")
        previous = local
    return EXIT_OK


async def _reset(args: argparse.Namespace, url: str) -> int:
    store = open_store(url)
    try:
        state = await store.load(args.job_id)
        if state is None:
            print(f"no state stored for job {args.job_id!r} in {redact(url)}: nothing to reset")
            return EXIT_OK
        await store.delete(args.job_id)
        print(f"deleted the state of job {args.job_id!r} from {redact(url)}")
        return EXIT_OK
    finally:
        await store.aclose()


async def _read_command(args: argparse.Namespace, url: str) -> int:
    from ._cli_ledger import cmd_explain, cmd_history, cmd_status

    if args.command == "reset":
        return await _reset(args, url)
    if args.timezone:
        to_zone(args.timezone)  # an unknown zone is a usage error before the store is opened
    command = {"status": cmd_status, "history": cmd_history, "explain": cmd_explain}[args.command]
    return await command(args, url)


def _dispatch(args: argparse.Namespace, command: list[str] | None) -> int:
    if args.command == "next":
        return cmd_next(args)
    resolve_url_files(args)
    if args.command in ("run", "check"):
        from ._cli_run import run_command

        return run_command(args, command or [])
    url = args.state or default_state_url()
    from ._cli_ledger import UnknownJob

    try:
        return asyncio.run(_read_command(args, url))
    except UnknownJob as exc:
        say_error(str(exc))
        return EXIT_ERROR
    except (StoreError, ImportError) as exc:
        say_error(scrub(str(exc), url))
        return EXIT_ERROR


def safe_text(text: str) -> str:
    """``text`` printable on any stream: one line, undecodable bytes and controls escaped."""
    flat = " ".join(text.split())
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in flat)


def say_error(message: str) -> None:
    """One ``scheduler: ...`` line on stderr (a runtime error, exit status 1)."""
    _write_stderr(f"scheduler: {safe_text(message)}")


def _write_stderr(line: str) -> None:
    data = (line + "\n").encode("utf-8", "backslashreplace")
    sys.stderr.flush()
    stream = getattr(sys.stderr, "buffer", None)
    if stream is not None:
        stream.write(data)
        stream.flush()
    else:  # a text-only stream (tests capturing stderr)
        sys.stderr.write(data.decode("utf-8"))
        sys.stderr.flush()


def _subparser(parser: _Parser, name: str) -> _Parser | None:
    for action in parser._subparsers._group_actions if parser._subparsers else []:
        if isinstance(action.choices, dict) and name in action.choices:
            found = action.choices[name]
            return found if isinstance(found, _Parser) else None
    return None


def _command_word(args: list[str]) -> str | None:
    """The subcommand: the first argument that is not an option (top-level has only flags)."""
    return next((a for a in args if not a.startswith("-")), None)


def _unknown_option(parser: _Parser, args: list[str]) -> str | None:
    """The first flag the chosen subcommand does not know (reported before missing ones)."""
    sub = _command_word(args)
    known: set[str] = set(parser._option_string_actions)
    chosen = _subparser(parser, sub) if sub else None
    if chosen is not None:
        known |= set(chosen._option_string_actions)
    for arg in args:
        flag = arg.partition("=")[0]
        if flag.startswith("-") and len(flag) > 1 and not flag[1].isdigit() and flag not in known:
            return arg
    return None


def _parse(args_list: list[str]) -> argparse.Namespace:
    parser = build_parser()
    word = _command_word(args_list)
    if word is not None and word not in COMMANDS:
        raise UsageError(f"unknown command {word!r} (choose from {', '.join(COMMANDS)})")
    origin: dict[str, str] = {}
    chosen = _subparser(parser, word) if word else None
    if chosen is not None and word is not None and word != "next":
        try:
            extra, origin = from_environment(chosen, args_list[args_list.index(word) + 1 :], environment())
        except EnvUsageError as exc:
            raise UsageError(str(exc)) from None
        args_list = [*args_list, *extra]
    try:
        return parser.parse_args(args_list)
    except UsageError as exc:
        unknown = _unknown_option(parser, args_list)
        if unknown is not None:
            raise UsageError(f"unrecognized argument: {unknown}") from None
        raise UsageError(_name_variables(str(exc), origin)) from None


def _name_variables(message: str, origin: dict[str, str]) -> str:
    """Point at the variable when the bad value came from the environment."""
    named = [f"{variable} for {flag}" for flag, variable in origin.items() if flag in message]
    return f"{message} (from {', '.join(named)})" if named else message


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``scheduler`` console script; returns the exit status."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    command: list[str] | None = None
    if "--" in args_list:  # everything after the first "--" is the wrapped command, verbatim
        split = args_list.index("--")
        args_list, command = args_list[:split], args_list[split + 1 :]
    try:
        args = _parse(args_list)
        if args.command in ("run", "check") and not command:
            raise UsageError(
                f"{args.command} needs the command to wrap after '--', e.g. scheduler run --every 5m -- echo hi"
            )
        if args.command not in ("run", "check") and command is not None:
            raise UsageError(f"'--' is only used by 'run' and 'check', not by {args.command!r}")
        return _dispatch(args, command)
    except SystemExit as exc:  # --help and --version exit through argparse
        return exc.code if isinstance(exc.code, int) else EXIT_OK
    except (UsageError, InvalidJobError, EnvUsageError) as exc:
        _write_stderr(f"scheduler: error: {safe_text(str(exc))} (see scheduler --help)")
        return EXIT_USAGE
    except SchedulerError as exc:
        say_error(str(exc))
        return EXIT_ERROR
