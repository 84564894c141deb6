"""The budget's pure parts and its process-side logic, on a scripted Redis reply
and a fake clock: what the headers change, who asks Redis, how long it sleeps."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import pytest
from pydantic import SecretStr
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from executor.app import rate_budget
from executor.budget import SharedBudget, account_name, budget_keys, key_name
from executor.bybit.client import ApiKey
from executor.limiter import (
    RESET_FALLBACK_S,
    THROTTLE_FACTOR,
    LocalBudget,
    Step,
    TokenBucket,
    Venue,
    batch_lane,
    follow,
)
from executor.settings import ConfigError, load_settings
from tests.unit.conftest import Spawn

# ---- follow: what one answer's headers change ----------------------------------------


def test_a_limit_below_the_configured_rate_becomes_the_cap() -> None:
    step = follow(10, None, Venue(limit=5, remaining=3), refused=False, next_in_s=0)
    assert step == Step(cap=5)


def test_the_same_lower_limit_again_changes_nothing() -> None:
    step = follow(10, 5, Venue(limit=5, remaining=3), refused=False, next_in_s=0)
    assert not step


def test_a_limit_back_at_the_configured_rate_lifts_the_cap() -> None:
    assert follow(10, 5, Venue(limit=10), refused=False, next_in_s=0) == Step(uncap=True)
    assert follow(10, 5, Venue(limit=1_000_000), refused=False, next_in_s=0) == Step(uncap=True)


@pytest.mark.parametrize("limit", [None, 0, -1, 10, 20])
def test_no_limit_or_one_at_or_above_the_rate_leaves_an_uncapped_budget_alone(
    limit: int | None,
) -> None:
    assert not follow(10, None, Venue(limit=limit), refused=False, next_in_s=0)


def test_a_spent_window_holds_until_the_reset_when_that_is_after_the_next_grant() -> None:
    venue = Venue(limit=10, remaining=0, reset_in_s=0.25)
    assert follow(10, None, venue, refused=False, next_in_s=0.1) == Step(hold_s=0.25)


def test_a_spent_window_that_resets_before_the_next_grant_needs_no_hold() -> None:
    venue = Venue(limit=10, remaining=0, reset_in_s=0.09)
    assert not follow(10, None, venue, refused=False, next_in_s=0.1)


@pytest.mark.parametrize(
    "venue",
    [
        pytest.param(Venue(limit=10, remaining=1, reset_in_s=0.5), id="budget-left"),
        pytest.param(Venue(limit=10, remaining=0, reset_in_s=-0.2), id="reset-passed"),
        pytest.param(Venue(limit=10, remaining=0), id="no-reset"),
    ],
)
def test_no_hold_without_a_spent_window_that_resets_later(venue: Venue) -> None:
    assert not follow(10, None, venue, refused=False, next_in_s=-1)


def test_a_10006_holds_until_its_reset_and_slows_down() -> None:
    venue = Venue(limit=10, remaining=0, reset_in_s=0.35)
    assert follow(10, None, venue, refused=True, next_in_s=5) == Step(hold_s=0.35, slow=True)


def test_a_10006_without_a_reset_holds_for_the_documented_fallback() -> None:
    step = follow(10, None, Venue(), refused=True, next_in_s=0)
    assert step == Step(hold_s=RESET_FALLBACK_S, slow=True)


def test_a_10006_whose_reset_passed_still_slows_down() -> None:
    step = follow(10, None, Venue(reset_in_s=-1), refused=True, next_in_s=0)
    assert step == Step(hold_s=0.0, slow=True) and step


def test_a_10006_showing_a_lower_limit_caps_holds_and_slows_at_once() -> None:
    venue = Venue(limit=5, remaining=0, reset_in_s=0.4)
    assert follow(10, None, venue, refused=True, next_in_s=0) == Step(0.4, True, 5)


# ---- key names ---------------------------------------------------------------------------


def test_budget_keys_name_the_account_and_category_and_no_api_key() -> None:
    assert budget_keys(account_name("1000001"), "linear") == [
        "executor:budget:uid-1000001:linear",
        "executor:budget:uid-1000001:linear:log",
    ]
    name = key_name("SIMPRIMARYKEY00001")
    assert name.startswith("key-") and "SIMPRIMARY" not in name
    assert name == key_name("SIMPRIMARYKEY00001") != key_name("SIMSECONDARYKEY001")


def test_a_batch_lane_has_keys_of_its_own() -> None:
    assert batch_lane("linear") == "linear:batch"
    single, batch = budget_keys("uid-1", "linear"), budget_keys("uid-1", batch_lane("linear"))
    assert batch == ["executor:budget:uid-1:linear:batch", "executor:budget:uid-1:linear:batch:log"]
    assert not set(single) & set(batch)


# ---- SharedBudget against a scripted reply -------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Scripted:
    """Stands in for the Lua script: answers each call with the next reply (or
    raises it); a call may be held until the test lets it through."""

    def __init__(self, *replies: list[int] | Exception, held: bool = False) -> None:
        self.replies = list(replies)
        self.calls: list[tuple[list[str], list[Any]]] = []
        self.held = held
        self.gates: list[asyncio.Event] = []

    async def __call__(self, *, keys: list[str], args: list[Any]) -> list[int]:
        self.calls.append((keys, args))
        if self.held:
            gate = asyncio.Event()
            self.gates.append(gate)
            await gate.wait()
        reply = self.replies.pop(0)
        if isinstance(reply, Exception):
            raise reply
        return reply


def grant(next_us: int = 100_000, cap: int = -1, units: int = 1) -> list[int]:
    return [units, next_us, cap, 1_700_000_000_000_000]


def wait(micros: int, cap: int = -1) -> list[int]:
    return [0, micros, cap, 1_700_000_000_000_000]


class Sleeps:
    """The budget's sleep: records each duration and moves the fake clock on."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.taken: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.taken.append(seconds)
        self.clock.now += seconds


def shared(script: Scripted, clock: FakeClock, sleeps: Sleeps, **kw: Any) -> SharedBudget:
    return SharedBudget(script, name="acct", rate=10, clock=clock, sleep=sleeps, **kw)


async def test_a_grant_with_room_is_one_call_and_no_sleep() -> None:
    clock = FakeClock()
    sleeps, script = Sleeps(clock), Scripted(grant())
    assert await shared(script, clock, sleeps).acquire("linear", 5.0) == 1
    ((keys, args),) = script.calls
    assert keys == budget_keys("acct", "linear")
    assert args[:4] == ["take", 10.0, 1, 1_010_000]  # the window is 1 s plus the 10 ms margin
    assert args[5] == 1  # one unit
    assert sleeps.taken == []


async def test_several_units_are_asked_for_and_what_the_script_granted_is_returned() -> None:
    clock = FakeClock()
    sleeps, script = Sleeps(clock), Scripted(wait(40_000), grant(units=3))
    assert await shared(script, clock, sleeps).acquire("linear", 5.0, units=7) == 3
    assert [args[5] for _keys, args in script.calls] == [7, 7]
    assert sleeps.taken == [0.04]


async def test_several_units_that_cannot_come_in_time_are_none() -> None:
    clock = FakeClock()
    sleeps, script = Sleeps(clock), Scripted(wait(900_000))
    assert await shared(script, clock, sleeps).acquire("linear", 0.5, units=20) == 0
    assert sleeps.taken == []


class ScriptHost:
    """Stands in for Redis where only ``register_script`` is used."""

    def __init__(self, script: Scripted) -> None:
        self.script = script

    def register_script(self, text: str) -> Scripted:
        return self.script


async def test_the_batch_budget_has_a_burst_of_its_limit_and_asks_on_the_lane() -> None:
    clock = FakeClock()
    sleeps, script = Sleeps(clock), Scripted(grant(units=8), [-1, 0])
    host: Any = ScriptHost(script)
    budget = SharedBudget.batches(host, name="acct", rate=Decimal("7.5"), clock=clock, sleep=sleeps)
    lane = batch_lane("linear")
    assert await budget.acquire(lane, 5.0, units=20) == 8
    await budget.heard(lane, Venue(limit=10, remaining=0, reset_in_s=0.5), refused=True)
    (keys, take), (adjust_keys, adjust) = script.calls
    assert keys == adjust_keys == budget_keys("acct", lane)
    assert take[:4] == ["take", 7.5, 8, 1_010_000] and take[5] == 20
    assert adjust[0] == "adjust" and adjust[4:8] == [500_000, -1, THROTTLE_FACTOR, 10_000_000]


@pytest.mark.parametrize("units", [0, -1])
async def test_asking_for_no_units_is_an_error(units: int) -> None:
    clock = FakeClock()
    with pytest.raises(ValueError, match="units must be >= 1"):
        await shared(Scripted(), clock, Sleeps(clock)).acquire("linear", 5.0, units=units)
    with pytest.raises(ValueError, match="units must be >= 1"):
        await local(clock).acquire("linear", 5.0, units=units)


async def test_a_refusal_is_slept_exactly_once_then_asked_again() -> None:
    clock = FakeClock()
    sleeps, script = Sleeps(clock), Scripted(wait(37_500), grant())
    assert await shared(script, clock, sleeps).acquire("linear", 5.0) == 1
    assert sleeps.taken == [0.0375]
    assert len(script.calls) == 2


async def test_the_next_waiter_sleeps_until_the_grant_said_the_next_can_come_then_asks() -> None:
    clock = FakeClock()
    sleeps, script = Sleeps(clock), Scripted(grant(next_us=100_000), grant(next_us=100_000))
    budget = shared(script, clock, sleeps)
    assert await budget.acquire("linear", 5.0)
    assert await budget.acquire("linear", 5.0)
    assert sleeps.taken == [pytest.approx(0.1)]
    assert len(script.calls) == 2  # one call per grant while this process is alone


async def test_a_wait_past_the_deadline_gives_up_at_once_without_sleeping() -> None:
    clock = FakeClock()
    sleeps, script = Sleeps(clock), Scripted(wait(3_000_000))
    assert await shared(script, clock, sleeps).acquire("linear", 2.0) == 0
    assert sleeps.taken == [] and len(script.calls) == 1


async def test_no_time_left_asks_nothing() -> None:
    clock = FakeClock()
    sleeps, script = Sleeps(clock), Scripted()
    assert await shared(script, clock, sleeps).acquire("linear", 0.0) == 0
    assert script.calls == []


async def test_redis_unreachable_is_retried_with_growing_pauses_and_grants_nothing() -> None:
    clock = FakeClock()
    down = RedisConnectionError("refused")
    sleeps, script = Sleeps(clock), Scripted(down, OSError("reset"), grant())
    assert await shared(script, clock, sleeps).acquire("linear", 5.0) == 1
    assert sleeps.taken == [0.05, 0.1]


async def test_redis_unreachable_until_the_deadline_means_no_grant() -> None:
    clock = FakeClock()
    down = [RedisConnectionError("refused") for _ in range(20)]
    sleeps, script = Sleeps(clock), Scripted(*down)
    assert await shared(script, clock, sleeps).acquire("linear", 1.0) == 0
    assert sum(sleeps.taken) < 1.0 and len(script.calls) == len(sleeps.taken) + 1


async def test_a_hung_redis_call_times_out_and_counts_as_unreachable() -> None:
    clock = FakeClock()
    sleeps = Sleeps(clock)
    script = Scripted(grant(), held=True)
    budget = shared(script, clock, sleeps, call_timeout_s=0.01)
    assert await budget.acquire("linear", 0.04) == 0  # 0.05 s backoff: past the deadline
    assert len(script.calls) == 1


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_local_waiters_queue_in_arrival_order_and_only_the_first_asks_redis(
    spawn: Spawn,
) -> None:
    clock = FakeClock()
    script = Scripted(grant(), grant(), grant(), grant(), held=True)
    budget = shared(script, clock, Sleeps(clock))
    served: list[str] = []

    async def take(name: str, category: str = "linear") -> int:
        granted = await budget.acquire(category, 5.0)
        served.append(name)
        return granted

    for name in ("a", "b", "c"):
        spawn(take(name))
    await settle()
    assert len(script.calls) == 1  # b and c wait behind a, not at Redis
    spot = spawn(take("spot", "spot"))
    await settle()
    assert len(script.calls) == 2  # another category has its own queue
    for index in (0, 2, 3):
        script.gates[index].set()
        await settle()
    script.gates[1].set()
    await settle()
    assert served == ["a", "b", "c", "spot"] and spot.result() == 1


async def test_headers_that_change_nothing_cost_no_redis_call() -> None:
    clock = FakeClock()
    script = Scripted(grant(next_us=100_000))
    budget = shared(script, clock, Sleeps(clock))
    await budget.acquire("linear", 5.0)
    # Spent window, but it resets before the budget's own next grant: nothing to share.
    await budget.heard("linear", Venue(limit=10, remaining=0, reset_in_s=0.09))
    await budget.heard("linear", Venue(limit=10, remaining=4, reset_in_s=0.0))
    await budget.heard("linear", Venue())
    assert len(script.calls) == 1


async def test_a_spent_window_resetting_after_the_next_grant_is_shared_as_a_hold() -> None:
    clock = FakeClock()
    script = Scripted(grant(next_us=100_000), [-1, 0])
    budget = shared(script, clock, Sleeps(clock))
    await budget.acquire("linear", 5.0)
    await budget.heard("linear", Venue(limit=10, remaining=0, reset_in_s=0.115))
    keys, args = script.calls[1]
    assert keys == budget_keys("acct", "linear")
    assert args[0] == "adjust" and args[4:8] == [115_000, -1, THROTTLE_FACTOR, 0]


async def test_a_10006_is_shared_as_hold_and_throttle() -> None:
    clock = FakeClock()
    script = Scripted([-1, 0])
    await shared(script, clock, Sleeps(clock)).heard(
        "linear", Venue(limit=10, remaining=0, reset_in_s=0.5), refused=True
    )
    ((_keys, args),) = script.calls
    assert args[4:8] == [500_000, -1, THROTTLE_FACTOR, 10_000_000]


async def test_a_lower_limit_is_shared_once_and_then_known_from_the_replies() -> None:
    clock = FakeClock()
    script = Scripted([5, 0], grant(cap=5), grant(cap=-1), [-1, 0])
    budget = shared(script, clock, Sleeps(clock))
    await budget.heard("linear", Venue(limit=5, remaining=2))
    assert script.calls[0][1][5] == 5
    await budget.acquire("linear", 5.0)
    await budget.heard("linear", Venue(limit=5, remaining=2))
    assert len(script.calls) == 2  # the cap is known: nothing to write
    await budget.acquire("linear", 5.0)  # another replica lifted it meanwhile
    await budget.heard("linear", Venue(limit=5, remaining=2))
    assert script.calls[3][1][5] == 5


async def test_redis_unreachable_while_sharing_headers_is_not_an_error() -> None:
    clock = FakeClock()
    script = Scripted(RedisConnectionError("refused"))
    budget = shared(script, clock, Sleeps(clock))
    await budget.heard("linear", Venue(reset_in_s=1.0), refused=True)
    assert len(script.calls) == 1


def test_a_shared_budget_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="rate must be > 0"):
        SharedBudget(Scripted(), name="x", rate=0)
    with pytest.raises(ValueError, match="burst >= 1"):
        SharedBudget(Scripted(), name="x", rate=1, burst=0)


# ---- LocalBudget -----------------------------------------------------------------------


def local(clock: FakeClock) -> LocalBudget:
    return LocalBudget.paced(10, 1, clock=clock)


async def test_local_budget_follows_a_lower_limit_after_letting_the_window_empty() -> None:
    clock = FakeClock()
    budget = local(clock)
    assert await budget.acquire("linear", 1.0)
    await budget.heard("linear", Venue(limit=4, remaining=2))
    bucket = budget.bucket("linear")
    assert bucket.rate == 4.0
    assert bucket.delay() == 1.0  # what went out at 10/s leaves Bybit's window first
    await budget.heard("linear", Venue(limit=10, remaining=9))
    assert bucket.rate == 10.0


async def test_local_budget_holds_a_spent_window_only_past_its_own_next_token() -> None:
    clock = FakeClock()
    budget = local(clock)
    assert await budget.acquire("linear", 1.0)
    bucket = budget.bucket("linear")
    await budget.heard("linear", Venue(limit=10, remaining=0, reset_in_s=0.0625))
    assert bucket.delay() == pytest.approx(0.1)  # the next token comes later anyway
    await budget.heard("linear", Venue(limit=10, remaining=0, reset_in_s=0.25))
    assert bucket.delay() == 0.25


async def test_local_budget_categories_pace_apart() -> None:
    clock = FakeClock()
    budget = local(clock)
    assert await budget.acquire("linear", 0.0)
    assert await budget.acquire("spot", 0.0)
    assert not await budget.acquire("linear", 0.0)


async def test_local_budget_with_a_burst_of_one_grants_one_unit_however_many_are_asked() -> None:
    clock = FakeClock()
    budget = local(clock)
    clock.now += 60
    assert await budget.acquire("linear", 0.0, units=5) == 1
    assert await budget.acquire("linear", 0.0, units=5) == 0


WINDOW = 1.0 + 1 / 64  # exact in binary: the fake clock lands on the window's edge


def batches(clock: FakeClock) -> LocalBudget:
    return LocalBudget.batches(8, clock=clock, margin_s=1 / 64)


async def test_local_batch_lane_grants_its_whole_limit_at_once_and_no_more_in_a_window() -> None:
    clock = FakeClock()
    budget, lane = batches(clock), batch_lane("linear")
    assert await budget.acquire(lane, 0.0, units=20) == 8
    assert await budget.acquire(batch_lane("spot"), 0.0, units=3) == 3  # a lane of its own
    clock.now += 1.0  # the bucket is full again, the window is not over
    assert await budget.acquire(lane, 0.0, units=20) == 0
    clock.now = 100.0 + WINDOW
    assert await budget.acquire(lane, 0.0, units=5) == 5
    assert await budget.acquire(lane, 0.0, units=5) == 3


async def test_local_batch_lane_waiter_gets_the_first_unit_and_what_else_is_there(
    spawn: Spawn,
) -> None:
    clock = FakeClock()
    budget, lane = batches(clock), batch_lane("linear")
    assert await budget.acquire(lane, 0.0, units=8) == 8
    waiter = spawn(budget.acquire(lane, 5.0, units=5))
    await settle()
    assert not waiter.done()
    clock.now = 100.0 + WINDOW  # the window's grants leave it; the timer would fire now
    budget.bucket(lane).wake()
    await settle()
    assert waiter.result() == 5


async def test_local_batch_lane_keeps_to_a_lower_limit_from_the_exchange() -> None:
    clock = FakeClock()
    budget, lane = batches(clock), batch_lane("linear")
    assert await budget.acquire(lane, 0.0, units=8) == 8
    await budget.heard(lane, Venue(limit=4, remaining=3))
    clock.now = 104.0
    assert await budget.acquire(lane, 0.0, units=20) == 4
    clock.now = 104.5  # tokens exist, the lower limit is spent within the window
    assert await budget.acquire(lane, 0.0, units=20) == 0
    clock.now = 104.0 + WINDOW
    assert await budget.acquire(lane, 0.0, units=20) == 4
    await budget.heard(lane, Venue(limit=8, remaining=4))
    clock.now = 108.0
    assert await budget.acquire(lane, 0.0, units=20) == 8


async def test_local_budget_gives_up_when_no_token_comes_in_time_and_keeps_it() -> None:
    bucket = TokenBucket(10, 1, clock=asyncio.get_running_loop().time)
    budget = LocalBudget.of(bucket)
    assert await budget.acquire("linear", 1.0)
    bucket.hold(60)
    assert await budget.acquire("linear", 0.01) == 0
    assert bucket.delay() == pytest.approx(60, abs=0.1)


# ---- settings and wiring ---------------------------------------------------------------------


def test_the_budget_is_shared_by_default_with_a_ten_millisecond_margin() -> None:
    settings = load_settings(dry_run=True)
    assert settings.rate_limit_shared is True
    assert settings.rate_limit_margin_ms == 10
    assert settings.rate_limit_key is None


@pytest.mark.parametrize("name", ["has space", "", "a/b", "x" * 101])
def test_a_budget_name_unfit_for_a_redis_key_stops_start_up(name: str) -> None:
    with pytest.raises(ConfigError, match="EXECUTOR_RATE_LIMIT_KEY"):
        load_settings(dry_run=True, rate_limit_key=name)


async def test_wiring_picks_the_shared_budget_named_without_the_api_key() -> None:
    redis = Redis.from_url("redis://127.0.0.1:1")  # never connected: nothing is asked
    key = ApiKey("primary", "SIMPRIMARYKEY00001", SecretStr("secret"))
    try:
        budget = rate_budget(load_settings(dry_run=True), redis, [key], lambda: 0.0)
        assert isinstance(budget, SharedBudget) and budget.name == key_name(key.key)
        named = load_settings(dry_run=True, rate_limit_key="desk-1")
        budget = rate_budget(named, redis, [key], lambda: 0.0)
        assert isinstance(budget, SharedBudget) and budget.name == "desk-1"
        alone = load_settings(dry_run=True, rate_limit_shared=False)
        assert isinstance(rate_budget(alone, redis, [key], lambda: 0.0), LocalBudget)
    finally:
        await redis.aclose()
