"""Shared fixtures: a fake clock at a fixed instant and a recording observer."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from scheduler.testing import FakeClock, RecordingObserver

T0 = datetime(2025, 1, 1, tzinfo=UTC)


@pytest.fixture
def clock() -> FakeClock:
    """A FakeClock at 2025-01-01T00:00Z that auto-advances when the loop is idle."""
    return FakeClock(T0)


@pytest.fixture
def recorder() -> RecordingObserver:
    """An observer that keeps every event."""
    return RecordingObserver()
