"""Usage mistakes of the ``scheduler`` command, in process through ``main(argv)``: each exits 2
with exactly one ``scheduler: error:`` line that names the flag or the value, no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from scheduler._cli import main

RUN = ["run", "--job-id", "x"]
EVERY = [*RUN, "--every", "1s"]

BAD: list[tuple[list[str], str]] = [
    ([*EVERY, "--frobnicate", "--", "true"], "--frobnicate"),
    ([*RUN, "--ever", "5m", "--", "true"], "--ever"),
    ([*EVERY, "--time", "UTC", "--", "true"], "--time"),
    ([*RUN, "--every", "5 minutes", "--", "true"], "5 minutes"),
    ([*RUN, "--every", "0s", "--", "true"], "--every"),
    ([*RUN, "--every", "-5s", "--", "true"], "--every"),
    ([*RUN, "--every", "99999d", "--", "true"], "99999d"),
    ([*RUN, "--every", "1s", "--cron", "@daily", "--", "true"], "--cron"),
    ([*RUN, "--", "true"], "--every"),
    (["run", "--every", "1s", "--", "true"], "--job-id"),
    ([*RUN, "--cron", "61 * * * *", "--", "true"], "61"),
    ([*RUN, "--cron", "0 0 31 2 *", "--", "true"], "0 0 31 2 *"),
    ([*RUN, "--cron", "@fortnightly", "--", "true"], "@fortnightly"),
    ([*RUN, "--cron", "* * *", "--", "true"], "3 fields"),
    ([*RUN, "--at", "tomorrow", "--", "true"], "tomorrow"),
    ([*RUN, "--at", "0001-01-01T00:00+05:00", "--", "true"], "0001-01-01"),
    ([*EVERY, "--timezone", "Mars/Base", "--", "true"], "Mars/Base"),
    ([*EVERY, "--timezone", "America", "--", "true"], "America"),
    ([*EVERY, "--timezone", "x" * 300, "--", "true"], "timezone"),
    ([*EVERY, "--window", "Mon-Fri 09:00", "--", "true"], "09:00"),
    ([*EVERY, "--window", "00:00-02:00-10:00", "--", "true"], "02:00-10:00"),
    ([*EVERY, "--window", "Funday 09:00-10:00", "--", "true"], "Funday"),
    ([*EVERY, "--window", "09:00-09:00", "--", "true"], "09:00"),
    ([*EVERY, "--missed", "sometimes", "--", "true"], "sometimes"),
    ([*EVERY, "--overlap", "both", "--", "true"], "both"),
    ([*EVERY, "--max-runs", "-1", "--", "true"], "--max-runs"),
    ([*EVERY, "--max-runs", "many", "--", "true"], "many"),
    ([*EVERY, "--retries", "1.5", "--", "true"], "--retries"),
    ([*EVERY, "--timeout", "0s", "--", "true"], "--timeout"),
    ([*EVERY, "--kill-grace", "soon", "--", "true"], "soon"),
    ([*EVERY, "--lease-ttl", "0s", "--", "true"], "--lease-ttl"),
    ([*EVERY, "--jitter", "1s", "--", "true"], "jitter"),
    ([*EVERY, "--jitter", "later", "--", "true"], "later"),
    ([*EVERY, "--misfire-grace", "x", "--", "true"], "--misfire-grace"),
    ([*EVERY, "--catch-up-window", "x", "--", "true"], "--catch-up-window"),
    ([*EVERY, "--on-lease-lost", "panic", "--", "true"], "panic"),
    ([*EVERY, "--on-guard-error", "ignore", "--", "true"], "ignore"),
    ([*EVERY, "--terminal", "keep", "--", "true"], "keep"),
    ([*EVERY, "--log-format", "xml", "--", "true"], "xml"),
    ([*EVERY, "--log-level", "loud", "--", "true"], "loud"),
    ([*EVERY, "--metrics-port", "http", "--", "true"], "http"),
    ([*EVERY, "--metrics-port", "70000", "--", "true"], "70000"),
    ([*EVERY, "--state", "ftp://host/x", "--", "true"], "ftp://host/x"),
    ([*EVERY, "--state", "sqlite://", "--", "true"], "sqlite://"),
    ([*EVERY, "--guard", "memory:", "--", "true"], "memory:"),
    ([*EVERY, "--state", "memory:", "--state-file", "/x", "--", "true"], "--state-file"),
    ([*EVERY, "--state-file", "/nonexistent/url.txt", "--", "true"], "/nonexistent/url.txt"),
    ([*EVERY, "--startup-timeout", "forever", "--", "true"], "forever"),
    (["run", "--job-id", "a\x85b", "--every", "1s", "--", "true"], "job_id"),
    (["run", "--job-id", "\udcff", "--every", "1s", "--", "true"], "job_id"),
    (["run", "--job-id", " ", "--every", "1s", "--", "true"], "job_id"),
    ([*EVERY], "after '--'"),
    ([*EVERY, "--", "no-such-command-for-sure"], "no-such-command-for-sure"),
    ([*EVERY, "--", "/dev/null"], "/dev/null"),
    (["check", "--job-id", "x", "--every", "1s", "--", "no-such-command-for-sure"], "no-such-command-for-sure"),
    (["next", "--cron", "0 0 31 2 *"], "0 0 31 2 *"),
    (["next", "--cron", "@daily", "-n", "99999999999999999999"], "-n"),
    (["next", "--cron", "@daily", "-n", "1001"], "-n"),
    (["next", "--cron", "@daily", "--after", "yesterday"], "yesterday"),
    (["next", "--cron", "@daily", "--timezone", "Europe"], "Europe"),
    (["next", "--cron", "@daily", "--", "x"], "'--'"),
    (["status"], "--job-id"),
    (["status", "--job-id", "x", "--json", "--jsn"], "--jsn"),
    (["reset", "--job-id"], "--job-id"),
    (["stats", "--job-id", "x"], "stats"),
    (["bogus"], "bogus"),
    ([], "COMMAND"),
]


@pytest.mark.parametrize(("argv", "needle"), BAD, ids=[" ".join(a)[:60] for a, _ in BAD])
def test_bad_invocation_is_one_error_line_and_exit_2(
    argv: list[str], needle: str, capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    for name in [n for n in __import__("os").environ if n.startswith("SCHEDULER_")]:
        monkeypatch.delenv(name)
    assert main(argv) == 2
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("scheduler: error: "), err
    assert "Traceback" not in err
    assert needle in lines[0], (needle, lines[0])


def test_the_table_is_at_least_40_cases() -> None:
    assert len(BAD) >= 40


def test_report_folder_not_writable_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main([*EVERY, "--report", str(blocker / "sub" / "r.json"), "--", "true"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "--report" in err


def test_version_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("scheduler ")
    assert main(["run", "--help"]) == 0
    out = capsys.readouterr().out
    assert "-- COMMAND" in out
    for fragment in ("{skip,catch-up-once,replay-all}", "{shutdown,cancel-run,continue}", "(default: 30s)",
                     "--state-file", "--startup-timeout", "--jitter", "--run-on-start", "(default: forbid)"):  # fmt: skip
        assert fragment in out, fragment


# -- environment variables ----------------------------------------------------------------


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    for name in [n for n in __import__("os").environ if n.startswith("SCHEDULER_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    return monkeypatch


def test_variables_fill_in_flags_and_a_flag_wins(
    clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    clean_env.setenv("SCHEDULER_JOB_ID", "from-env")
    clean_env.setenv("SCHEDULER_EVERY", "1h")
    clean_env.setenv("SCHEDULER_STATE", "memory:")
    assert main(["check", "--", "true"]) == 0
    out = capsys.readouterr().out
    assert "'from-env'" in out
    assert "memory:" in out
    assert main(["check", "--job-id", "from-argv", "--", "true"]) == 0
    assert "'from-argv'" in capsys.readouterr().out


def test_a_schedule_flag_cancels_every_schedule_variable(
    clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    clean_env.setenv("SCHEDULER_STATE", "memory:")
    clean_env.setenv("SCHEDULER_EVERY", "1h")
    clean_env.setenv("SCHEDULER_CRON", "@daily")
    assert main(["check", "--job-id", "j", "--", "true"]) == 2
    assert "SCHEDULER_EVERY and SCHEDULER_CRON" in capsys.readouterr().err
    assert main(["check", "--job-id", "j", "--at", "2099-01-01T00:00Z", "--", "true"]) == 0
    assert "2099-01-01" in capsys.readouterr().out


def test_schedule_at_variable_is_space_separated(
    clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    clean_env.setenv("SCHEDULER_STATE", "memory:")
    clean_env.setenv("SCHEDULER_AT", "2099-01-01T00:00Z 2099-01-02T00:00Z")
    assert main(["check", "--job-id", "j", "--", "true"]) == 0
    out = capsys.readouterr().out
    assert "2099-01-01T00:00:00Z" in out
    assert "2099-01-02T00:00:00Z" in out


@pytest.mark.parametrize(("value", "code"), [("1", 0), ("true", 0), ("0", 0), ("FALSE", 0), ("maybe", 2)])
def test_boolean_variables(
    clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], value: str, code: int
) -> None:
    clean_env.setenv("SCHEDULER_STATE", "memory:")
    clean_env.setenv("SCHEDULER_RUN_ON_START", value)
    assert main(["check", "--job-id", "j", "--every", "1h", "--", "true"]) == code
    if code:
        assert "SCHEDULER_RUN_ON_START" in capsys.readouterr().err


def test_a_bad_variable_is_named(clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    clean_env.setenv("SCHEDULER_LEASE_TTL", "0s")
    assert main(["check", "--job-id", "j", "--every", "1h", "--", "true"]) == 2
    err = capsys.readouterr().err
    assert "SCHEDULER_LEASE_TTL" in err
    assert err.count("\n") == 1


def test_state_file_holds_the_url(
    clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    url_file = tmp_path / "state-url"
    url_file.write_text(f"sqlite:///{tmp_path}/via-file.db\n")
    assert main(["check", "--job-id", "j", "--every", "1h", "--state-file", str(url_file), "--", "true"]) == 0
    assert "via-file.db" in capsys.readouterr().out
    clean_env.setenv("SCHEDULER_STATE_FILE", str(url_file))
    assert main(["reset", "--job-id", "j"]) == 0
    assert "via-file.db" in capsys.readouterr().out
    # A flag (either form) wins over both variables.
    assert main(["reset", "--job-id", "j", "--state", "memory:"]) == 0
    assert "memory:" in capsys.readouterr().out


def test_reset_of_a_job_that_never_existed_says_so(
    clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["reset", "--job-id", "ghost"]) == 0
    assert "no state stored for job 'ghost'" in capsys.readouterr().out
