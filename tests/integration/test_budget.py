"""The shared budget's script on a real redis-server: several budgets (one per
replica, each with its own connection) and many acquirers at once.

Every grant and adjustment is recorded with the time the script read from Redis
(``TIME``), so the counts are on the budget's own clock: grants in any window,
the share of the rate used, where a hold or a lower limit put the next grant.
A grant of several units is recorded once per unit.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
from redis.asyncio import Redis

from executor.budget import SCRIPT, SharedBudget, budget_keys
from executor.dedup import Claim, Dedup
from executor.limiter import THROTTLE_FACTOR, Venue, batch_lane
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
        if args[0] == "take" and reply[0] >= 1:
            self._log.extend(("grant", reply[3]) for _ in range(reply[0]))
        elif args[0] == "adjust":
            self._log.append(("adjust", reply[1]))
        return reply


class Counted:
    """The recorded script, counting its calls."""

    def __init__(self, redis: Redis, log: list[tuple[str, int]]) -> None:
        self._recorder = Recorder(redis, log)
        self.calls = 0

    async def __call__(self, *, keys: list[str], args: list[Any]) -> list[int]:
        self.calls += 1
        return await self._recorder(keys=keys, args=args)


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


async def take_units(
    budget: SharedBudget, lane: str, asked: int, until: float, sizes: list[tuple[int, int]]
) -> None:
    """Ask for ``asked`` units again and again until none can come before ``until``."""
    while (left := until - time.monotonic()) > 0:
        granted = await budget.acquire(lane, left, units=asked)
        if not granted:
            return
        sizes.append((asked, granted))


def batch_budgets(
    replicas: list[Redis], log: list[tuple[str, int]], name: str, rate: int
) -> list[SharedBudget]:
    hosts = [Recorder(r, log) for r in replicas]
    return [SharedBudget(h, name=name, rate=rate, burst=rate) for h in hosts]


async def test_multi_unit_acquirers_on_three_replicas_keep_to_the_limit_and_use_it(
    replicas: list[Redis], names: Names
) -> None:
    limit, lane = 10, batch_lane("linear")
    log: list[tuple[str, int]] = []
    budgets = batch_budgets(replicas, log, names.prefix, limit)
    sizes: list[tuple[int, int]] = []
    until = time.monotonic() + 2.2  # three windows' worth
    asks = [(budgets[0], 20), (budgets[1], 20), (budgets[2], 7), (budgets[0], 3)]
    await asyncio.gather(*(take_units(b, lane, asked, until, sizes) for b, asked in asks))
    stamps = grants(log)
    assert sum(granted for _, granted in sizes) == len(stamps)
    assert all(1 <= granted <= asked for asked, granted in sizes)
    assert any(granted > 1 for _, granted in sizes)
    assert busiest(stamps, SECOND_US + MARGIN_US) <= limit
    windows = (max(stamps) - min(stamps)) / (SECOND_US + MARGIN_US)
    assert windows >= 1.5  # the run spans the three windows
    # A full window's worth at the start, then the limit in every window after it.
    assert len(stamps) - limit >= 0.95 * limit * windows


async def test_a_grant_takes_what_the_window_has_left_and_the_rest_waits_for_it(
    replicas: list[Redis], names: Names
) -> None:
    log: list[tuple[str, int]] = []
    first, other = batch_budgets(replicas[:2], log, names.prefix, 10)
    lane = batch_lane("linear")
    assert await first.acquire(lane, 5.0, units=7) == 7
    # Half a second on, the schedule would allow seven more: the window has room for three.
    await asyncio.sleep(0.5)
    assert await other.acquire(lane, 5.0, units=7) == 3
    assert await first.acquire(lane, 0.4, units=1) == 0  # spent until the seven leave it
    # The single orders' lane of the same account is not touched by the batch lane.
    single = SharedBudget(Recorder(replicas[2], log), name=names.prefix, rate=10)
    assert await single.acquire("linear", 0.5) == 1
    _state, grant_log = budget_keys(names.prefix, lane)
    assert await replicas[0].zcard(grant_log) == 10  # one entry per unit


async def test_several_units_asked_of_a_burst_of_one_come_one_at_a_time_and_paced(
    replicas: list[Redis], names: Names
) -> None:
    rate = 20
    log: list[tuple[str, int]] = []
    budgets = [SharedBudget(Recorder(r, log), name=names.prefix, rate=rate) for r in replicas]
    sizes: list[tuple[int, int]] = []

    async def ask(budget: SharedBudget) -> None:
        for _ in range(4):
            granted = await budget.acquire("linear", 30.0, units=5)
            sizes.append((5, granted))

    await asyncio.gather(*(ask(b) for b in budgets for _ in range(2)))
    assert [granted for _, granted in sizes] == [1] * 24
    stamps = sorted(grants(log))
    interval = SECOND_US // rate
    # Late by a tenth of an interval at most keeps the schedule: never closer than that.
    assert min(b - a for a, b in itertools.pairwise(stamps)) >= interval * 0.9
    assert busiest(stamps, SECOND_US + MARGIN_US) <= rate


async def test_several_units_move_the_schedule_on_by_as_many_intervals(
    replicas: list[Redis], names: Names
) -> None:
    rate, burst = 10, 5
    log: list[tuple[str, int]] = []
    budget = SharedBudget(Recorder(replicas[0], log), name=names.prefix, rate=rate, burst=burst)
    assert await budget.acquire("linear", 5.0, units=20) == burst
    second = await budget.acquire("linear", 5.0, units=20)
    first_at, then = grants(log)[0], grants(log)[-1]
    interval = SECOND_US // rate
    # The burst spent the schedule: the next unit is an interval away (less a tenth for
    # lateness), and only what accrued since then comes with it.
    assert then - first_at >= interval * 0.9
    assert 1 <= second <= 1 + (then - first_at) / interval


async def test_a_lower_limit_from_the_exchange_bounds_multi_unit_grants(
    replicas: list[Redis], names: Names
) -> None:
    log: list[tuple[str, int]] = []
    budgets = batch_budgets(replicas[:2], log, names.prefix, 10)
    lane = batch_lane("linear")
    assert await budgets[0].acquire(lane, 5.0, units=6) == 6
    await budgets[1].heard(lane, Venue(limit=4, remaining=3))
    sizes: list[tuple[int, int]] = []
    until = time.monotonic() + 1.5  # one window after the six have left it
    await asyncio.gather(*(take_units(b, lane, 20, until, sizes) for b in budgets))
    ((_, lowered_at),) = [entry for entry in log if entry[0] == "adjust"]
    stamps = grants(log)
    after = [stamp for stamp in stamps if stamp > lowered_at]
    assert sum(granted for _, granted in sizes) == len(after) == 4  # the lower limit, used
    window = SECOND_US + MARGIN_US
    for stamp in after:
        assert sum(1 for s in stamps if stamp - window < s <= stamp) <= 4
    state, _log = budget_keys(names.prefix, lane)
    assert await replicas[0].hget(state, "cap") == b"4"


async def test_a_10006_on_the_batch_lane_holds_every_replica(
    replicas: list[Redis], names: Names
) -> None:
    log: list[tuple[str, int]] = []
    first, other = batch_budgets(replicas[:2], log, names.prefix, 10)
    lane = batch_lane("linear")
    assert await first.acquire(lane, 5.0, units=2) == 2
    await first.heard(lane, Venue(limit=10, remaining=0, reset_in_s=0.3), refused=True)
    assert await other.acquire(lane, 5.0, units=5) >= 1
    ((_, held_at),) = [entry for entry in log if entry[0] == "adjust"]
    assert min(stamp for stamp in grants(log) if stamp > held_at) >= held_at + 300_000
    state, _log = budget_keys(names.prefix, lane)
    assert await replicas[0].hget(state, "slow") is not None


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
        assert await budget.acquire("linear", 0.3) == 0
        await budget.heard("linear", Venue(reset_in_s=1.0), refused=True)
    finally:
        await down.aclose()


async def test_callers_waiting_in_one_process_share_one_call(redis: Redis, names: Names) -> None:
    """With room in the budget, the caller at the lock asks for every caller
    queued behind it, so a crowd costs a few calls, not one each."""
    log: list[tuple[str, int]] = []
    script = Counted(redis, log)
    budget = SharedBudget(script, name=names.prefix, rate=100_000, burst=100_000)
    grants = await asyncio.gather(*(budget.acquire("linear", 2.0) for _ in range(200)))
    assert grants == [1] * 200
    assert len(log) == 200  # every unit taken from Redis went to a caller
    assert script.calls < 20


async def test_a_tight_budget_still_grants_one_per_call_to_a_crowd(
    redis: Redis, names: Names
) -> None:
    log: list[tuple[str, int]] = []
    budget = SharedBudget(Recorder(redis, log), name=names.prefix, rate=20, burst=1)
    grants = await asyncio.gather(*(budget.acquire("linear", 0.6) for _ in range(30)))
    stamps = [t for kind, t in log if kind == "grant"]
    assert sum(grants) == len(stamps) and set(grants) <= {0, 1}
    assert 10 <= len(stamps) <= 13  # 20/s paced over 0.6 s, never a burst
    assert busiest(stamps, SECOND_US * 9 // 200) <= 1  # spaced by 0.9 of an interval at least


async def claim_with(redis: Redis, names: Names, budget: SharedBudget, ids: str) -> None:
    """Claim one signal per letter of ``ids`` with the budget's grants asked ahead."""
    rider = budget.ahead("linear", len(ids))
    dedup = Dedup(redis, prefix=names.prefix)
    pairs = [(f"sig-{c}", f"{i + 1}-0") for i, c in enumerate(ids)]
    assert await dedup.claim_many(pairs, rider) == [Claim.NEW] * len(ids)


async def granted_in_redis(redis: Redis, names: Names) -> int:
    return int(await redis.zcard(budget_keys(names.prefix, "linear")[1]))


async def test_grants_asked_with_the_claims_serve_the_callers_that_follow_without_a_call(
    redis: Redis, names: Names
) -> None:
    script = Counted(redis, [])
    budget = SharedBudget(script, name=names.prefix, rate=1000, burst=10)
    await claim_with(redis, names, budget, "abc")
    assert await granted_in_redis(redis, names) == 3
    assert await asyncio.gather(*(budget.acquire("linear", 1.0) for _ in range(3))) == [1, 1, 1]
    assert script.calls == 0  # the three came with the claims' round trip
    assert await budget.acquire("linear", 1.0) == 1  # the fourth asks Redis
    assert script.calls == 1
    assert await granted_in_redis(redis, names) == 4


async def test_grants_asked_ahead_twice_add_up(redis: Redis, names: Names) -> None:
    script = Counted(redis, [])
    budget = SharedBudget(script, name=names.prefix, rate=1000, burst=10)
    await claim_with(redis, names, budget, "a")
    assert budget.ahead("linear", 1) is None  # one is already waiting as spare
    await claim_with(redis, names, budget, "bcd")
    assert await granted_in_redis(redis, names) == 4
    assert await asyncio.gather(*(budget.acquire("linear", 1.0) for _ in range(4))) == [1] * 4
    assert script.calls == 0


async def test_grants_asked_ahead_lapse_unused_after_half_the_margin(
    redis: Redis, names: Names
) -> None:
    script = Counted(redis, [])
    skew = [0.0]
    budget = SharedBudget(script, name=names.prefix, rate=1000, burst=10, margin_s=0.01,
                          clock=lambda: time.monotonic() + skew[0])  # fmt: skip
    await claim_with(redis, names, budget, "ab")
    skew[0] += 0.006  # later than a grant logged at its time may still be sent
    assert await budget.acquire("linear", 1.0) == 1
    assert script.calls == 1  # taken afresh: the two asked ahead lapsed
    assert await granted_in_redis(redis, names) == 3


async def test_nothing_is_asked_ahead_on_a_lane_that_must_wait(redis: Redis, names: Names) -> None:
    script = Counted(redis, [])
    budget = SharedBudget(script, name=names.prefix, rate=10, burst=1)
    assert await budget.acquire("linear", 1.0) == 1  # the next is 100 ms away
    assert budget.ahead("linear", 1) is None  # this replica knows it
    other = SharedBudget(script, name=names.prefix, rate=10, burst=1)
    await claim_with(redis, names, other, "a")  # another replica asks: told to wait
    assert await granted_in_redis(redis, names) == 1
    assert await other.acquire("linear", 1.0) == 1  # waits its turn
    assert await granted_in_redis(redis, names) == 2
