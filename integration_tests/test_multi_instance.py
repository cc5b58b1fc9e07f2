"""The multi-process exactly-once proof (see multi_instance.py; run it as a script for longer)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from multi_instance import run_proof

pytestmark = [pytest.mark.valkey, pytest.mark.slow]

#: Seconds each proof runs (SCHEDULER_PROOF_SECONDS to change it). The timeline scales with it,
#: and 12 s leave the start-up of the processes the same room as longer runs (the occurrence
#: floor below subtracts 5 s whatever the length).
DURATION_SECONDS = float(os.environ.get("SCHEDULER_PROOF_SECONDS", "12"))


@pytest.mark.timeout(DURATION_SECONDS + 60)
@pytest.mark.parametrize("where", ["server", "cluster"])
def test_four_processes_run_every_occurrence_exactly_once(
    where: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    duration = DURATION_SECONDS
    url = request.getfixturevalue("valkey_url" if where == "server" else "valkey_cluster_url")
    result = run_proof(url, duration, tmp_path)
    print(result)  # visible with -s: runs per pid, lateness, the run in flight at the kill
    assert result.duplicates == []
    assert result.gaps == []
    assert result.off_grid == []
    assert result.duplicate_fencing_tokens == 0
    assert result.exit_codes.count(-9) == 1, result.exit_codes  # the SIGKILLed instance
    assert all(code in (0, -9) for code in result.exit_codes), result.exit_codes
    # Which replica consumes an occurrence is a race (the first conditional save wins), so the
    # split is not even; it is enough that the work moves between processes.
    assert len(result.runs_per_pid) >= 2, "the instances must share the work"
    # 100 ms interval: a window of the duration minus the start-up and the end margin.
    assert result.occurrences >= (duration - 5) * 10
