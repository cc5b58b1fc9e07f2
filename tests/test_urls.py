"""Malformed store and guard URLs: a clear usage error, never a traceback or a password."""

from __future__ import annotations

import pytest

from scheduler import InvalidJobError, ValkeyExecutionGuard, ValkeyStateStore
from scheduler._cli import main
from scheduler._valkey_common import normalize_url

BAD = [
    ("valkey://:hunter22@127.0.0.1:notaport/0", "bad port"),
    ("valkey://:hunter22@[::1/0", "malformed host"),
    ("redis://:hunter22@127.0.0.1:6379/notadb", "'notadb' is not a number"),
    ("valkeys://user:hunter22@h:70000/0", "bad port"),
    ("valkey://:hunter22@/0", "no host"),
]


@pytest.mark.parametrize(("url", "problem"), BAD)
def test_malformed_valkey_urls_are_invalid_input(url: str, problem: str) -> None:
    for build in (normalize_url, ValkeyStateStore, ValkeyExecutionGuard):
        with pytest.raises(InvalidJobError) as caught:
            build(url)
        assert problem in str(caught.value)
        assert "hunter22" not in str(caught.value)


@pytest.mark.parametrize("url", ["redis://h", "redis://h/", "redis://h:6379/0", "valkey://h/3", "unix:///tmp/v.sock"])
def test_a_missing_database_means_zero_and_good_urls_pass(url: str) -> None:
    normalize_url(url)


@pytest.mark.parametrize(
    ("flag", "url"),
    [("--state", url) for url, _ in BAD]
    + [("--guard", url) for url, _ in BAD]
    + [("--state", "sqlite://"), ("--state", "garbage"), ("--guard", "garbage://x")],
)
def test_cli_exits_2_with_one_line(flag: str, url: str, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["run", "--job-id", "u", "--every", "1s", flag, url, "--", "true"])
    err = capsys.readouterr().err
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("scheduler: error: ")
    assert "hunter22" not in err
