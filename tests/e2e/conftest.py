"""Fixtures for end-to-end tests."""

from __future__ import annotations

import signal
from collections.abc import Iterator

import pytest

from tests.e2e.procs import Proc


@pytest.fixture
def fleet() -> Iterator[list[Proc]]:
    """Daemons started by a test; whatever is still running at the end is stopped by PID."""
    procs: list[Proc] = []
    yield procs
    for proc in procs:
        proc.stop(signal.SIGKILL)
