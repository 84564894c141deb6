"""The shared budget's script on a real redis-server: several budgets (one per
replica, each with its own connection) and many acquirers at once.

Every grant and adjustment is recorded with the time the script read from Redis
(``TIME``), so the counts are on the budget's own clock: grants in any window,
the share of the rate used, where a hold or a lower limit put the next grant.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
from redis.asyncio import Redis

from executor.budget import SCRIPT, SharedBudget, budget_keys
from executor.limiter import THROTTLE_FACTOR, Venue
from executor.redis_server import free_port
from tests.conftest import Names

SECOND_US = 1_000_000
MARGIN_US = 10_000  # the default margin


class Recorder:
    """The registered script, with the Redis time of every grant and adjustment."""

    def __init__(self, redis: Redis, log: list[tuple[str, int]]) -> None:
        self._script = redis.register_script(SCRIPT)
        self._log = log

    async def __call__(self, *, keys: list[str], args: list[Any]) -> list[int]:
        reply = [int(x) for x in await self._script(keys=keys, args=args)]
        if args[0] == "take" and reply[0] == 1:
            self._log.append(("grant", reply[3]))
        elif args[0] == "adjust":
            self._log.append(("adjust", reply[1]))
        return reply


@pytest.fixture
async def replicas(redis_url: str) -> AsyncIterator[list[Redis]]:
    clients = [Redis.from_url(redis_url) for _ in range(3)]
    yield clients
    for client in clients:
        await client.aclose()


def busiest(stamps_us: Sequence[int], window_us: int) -> int:
    """The most grants in any window [t, t + window)."""
    ordered = sorted(stamps_us)
    most, first = 0, 0
    for last, stamp in enumerate(ordered):
        while ordered[first] <= stamp - window_us:
            first += 1
        most = max(most, last - first + 1)
    return most


def grants(log: list[tuple[str, int]]) -> list[int]:
    return [stamp for kind, stamp in log if kind == "grant"]


async def take(budget: SharedBudget, count: int, category: str = "linear") -> None:
    for _ in range(count):
        assert await budget.acquire(category, 30.0)


async def test_three_replicas_with_many_acquirers_never_exceed_the_limit_and_use_it(
    replicas: list[Redis], names: Names
) -> None:
    rate, per_acquirer = 40, 10
    log: list[tuple[str, int]] = []
    budgets = [SharedBudget(Recorder(r, log), name=names.prefix, rate=rate) for r in replicas]
    # Four acquirers on each replica, 120 grants in all.
    await asyncio.gather(*(take(b, per_acquirer) for b in budgets for _ in range(4)))
    stamps = grants(log)
    assert len(stamps) == 120
    assert busiest(stamps, SECOND_US) <= rate
    assert busiest(stamps, SECOND_US + MARGIN_US) <= rate  # the jitter margin holds too
    span_s = (max(stamps) - min(stamps)) / SECOND_US
    assert (len(stamps) - 1) / (span_s * rate) >= 0.95


async def test_a_burst_setting_lets_that_many_go_at_once_and_never_more_in_a_second(
    replicas: list[Redis], names: Names
) -> None:
    log: list[tuple[str, int]] = []
    budgets = [
        SharedBudget(Recorder(r, log), name=names.prefix, rate=10, burst=5) for r in replicas
    ]
    await asyncio.gather(*(take(b, 5) for b in budgets for _ in range(2)))
    stamps = grants(log)
    # The first five go at once: well within one interval (paced, they would span 0.4 s).
    assert busiest(stamps[:5], 100_000) == 5
    assert busiest(stamps, SECOND_US) <= 10


async def test_a_hold_from_one_replica_stops_the_others_and_the_pace_slows(
    replicas: list[Redis], names: Names
) -> None:
    rate = 20
    log: list[tuple[str, int]] = []
    first, other = (
        SharedBudget(Recorder(r, log), name=names.prefix, rate=rate) for r in replicas[:2]
    )
    await take(first, 3)
    # A 10006 at the first replica: hold 0.3 s and run at 80% for ten seconds.
    await first.heard("linear", Venue(limit=rate, remaining=0, reset_in_s=0.3), refused=True)
    await take(other, 9)
    ((_, held_at),) = [entry for entry in log if entry[0] == "adjust"]
    after = [stamp for stamp in grants(log) if stamp > held_at]
    assert len(after) == 9
    assert min(after) >= held_at + 300_000  # nothing during the hold, whoever asks
    slowed = int(rate * THROTTLE_FACTOR)
    assert busiest(after, SECOND_US) <= slowed
    span_s = (max(after) - min(after)) / SECOND_US
    assert (len(after) - 1) / span_s <= slowed * 1.1  # paced at 16/s, not 20/s


async def test_a_lower_limit_waits_for_the_window_to_hold_fewer_then_keeps_to_it(
    replicas: list[Redis], names: Names
) -> None:
    log: list[tuple[str, int]] = []
    budgets = [SharedBudget(Recorder(r, log), name=names.prefix, rate=10) for r in replicas]
    await asyncio.gather(*(take(b, 4) for b in budgets))  # 12 at 10/s
    await budgets[0].heard("linear", Venue(limit=5, remaining=3))
    await asyncio.gather(*(take(b, 3) for b in budgets))  # 9 more, at 5/s
    ((_, lowered_at),) = [entry for entry in log if entry[0] == "adjust"]
    stamps = grants(log)
    after = [stamp for stamp in stamps if stamp > lowered_at]
    assert len(after) == 9
    # Every grant after the change has at most four others within the window
    # before it, those granted at the old rate included.
    window = SECOND_US + MARGIN_US
    for stamp in after:
        assert sum(1 for s in stamps if stamp - window < s <= stamp) <= 5
    state, _log = budget_keys(names.prefix, "linear")
    assert await replicas[0].hget(state, "cap") == b"5"
    await budgets[1].heard("linear", Venue(limit=10, remaining=9))
    assert await replicas[0].hget(state, "cap") is None


async def test_categories_have_budgets_of_their_own(replicas: list[Redis], names: Names) -> None:
    log: list[tuple[str, int]] = []
    budget = SharedBudget(Recorder(replicas[0], log), name=names.prefix, rate=1)
    assert await budget.acquire("linear", 5.0)
    assert await budget.acquire("spot", 5.0)
    assert not await budget.acquire("linear", 0.5)  # the next linear grant is a second away


async def test_the_budget_keys_expire_and_hold_no_secret(
    redis: Redis, replicas: list[Redis], names: Names
) -> None:
    budget = SharedBudget.on(replicas[0], name=names.prefix, rate=10)
    assert await budget.acquire("linear", 5.0)
    state, grant_log = budget_keys(names.prefix, "linear")
    assert 0 < await redis.pttl(state) <= 62_000  # a minute past its schedule
    assert 0 < await redis.pttl(grant_log) <= 2_010
    assert set(await redis.hkeys(state)) == {b"tat"}


async def test_a_flushed_script_cache_is_reloaded(
    redis: Redis, replicas: list[Redis], names: Names
) -> None:
    budget = SharedBudget.on(replicas[0], name=names.prefix, rate=100)
    assert await budget.acquire("linear", 5.0)
    await redis.script_flush()
    assert await budget.acquire("linear", 5.0)


async def test_redis_unreachable_grants_nothing_and_raises_nothing() -> None:
    down = Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.2)
    try:
        budget = SharedBudget.on(down, name="nowhere", rate=10)
        assert await budget.acquire("linear", 0.3) is False
        await budget.heard("linear", Venue(reset_in_s=1.0), refused=True)
    finally:
        await down.aclose()
