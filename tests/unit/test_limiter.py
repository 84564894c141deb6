"""TokenBucket on a fake clock: the test steps the clock and calls ``wake()``
where the timer would have fired. Nothing sleeps.

Clock steps are powers of two apart so token arithmetic is exact in binary.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest

from executor.limiter import TokenBucket
from tests.unit.conftest import Spawn


class FakeClock:
    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class RecordingLoop:
    """The running loop, with every ``call_later`` the bucket makes recorded."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.timers: list[tuple[float, asyncio.TimerHandle]] = []

    def create_future(self) -> asyncio.Future[Any]:
        return self._loop.create_future()

    def call_later(self, delay: float, callback: Callable[[], None]) -> asyncio.TimerHandle:
        handle = self._loop.call_later(delay, callback)
        self.timers.append((delay, handle))
        return handle

    def live_timers(self) -> list[asyncio.TimerHandle]:
        return [handle for _, handle in self.timers if not handle.cancelled()]


async def settle() -> None:
    """Let every task that can run, run (a few turns, so 'still pending' means it)."""
    for _ in range(3):
        await asyncio.sleep(0)


def step(clock: FakeClock, bucket: TokenBucket, to: float) -> None:
    clock.now = to
    bucket.wake()


def test_burst_is_available_at_once_then_refused() -> None:
    bucket = TokenBucket(rate=1, burst=3, clock=FakeClock())
    assert [bucket.try_acquire() for _ in range(4)] == [True, True, True, False]


def test_tokens_accrue_at_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=4, burst=1, clock=clock)
    assert bucket.try_acquire() is True
    clock.now = 0.125  # half a token at 4/s
    assert bucket.try_acquire() is False
    clock.now = 0.25
    assert bucket.try_acquire() is True
    assert bucket.try_acquire() is False


def test_tokens_never_exceed_burst_after_long_idle() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=4, burst=2, clock=clock)
    assert [bucket.try_acquire() for _ in range(2)] == [True, True]
    clock.now = 1000.0
    assert [bucket.try_acquire() for _ in range(3)] == [True, True, False]


def test_decimal_rate_is_accepted() -> None:
    bucket = TokenBucket(rate=Decimal("2.5"), clock=FakeClock())
    assert bucket.rate == 2.5


def test_delay_is_zero_with_a_token_and_shrinks_as_time_passes() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=4, burst=1, clock=clock)
    assert bucket.delay() == 0.0
    bucket.try_acquire()
    assert bucket.delay() == 0.25
    clock.now = 0.125
    assert bucket.delay() == 0.125
    clock.now = 0.25
    assert bucket.delay() == 0.0


@pytest.mark.parametrize(
    ("rate", "burst"),
    [
        pytest.param(0, 1, id="zero-rate"),
        pytest.param(-1, 1, id="negative-rate"),
        pytest.param(Decimal(0), 1, id="zero-decimal-rate"),
        pytest.param(1, 0, id="zero-burst"),
        pytest.param(1, -3, id="negative-burst"),
    ],
)
def test_invalid_constructor_arguments_raise(rate: float, burst: int) -> None:
    with pytest.raises(ValueError, match="rate must be > 0 and burst >= 1"):
        TokenBucket(rate=rate, burst=burst, clock=FakeClock())


@pytest.mark.parametrize("rate", [0, -0.5, Decimal(0)])
def test_set_rate_refuses_non_positive_rate_and_keeps_the_old_one(rate: float) -> None:
    bucket = TokenBucket(rate=3, clock=FakeClock())
    with pytest.raises(ValueError, match="rate must be > 0"):
        bucket.set_rate(rate)
    assert bucket.rate == 3.0


async def test_acquire_with_a_token_returns_at_once_without_a_timer() -> None:
    loop = RecordingLoop(asyncio.get_running_loop())
    bucket = TokenBucket(rate=0.5, clock=FakeClock(), loop=loop)  # type: ignore[arg-type]
    assert await bucket.acquire() == 0.0
    assert loop.timers == []


async def test_waiter_is_granted_exactly_when_its_token_exists(spawn: Spawn) -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=0.5, burst=1, clock=clock)  # one token every 2 s
    assert bucket.try_acquire() is True
    waiter = spawn(bucket.acquire())
    await settle()
    assert not waiter.done()

    step(clock, bucket, 1.999)
    await settle()
    assert not waiter.done()

    step(clock, bucket, 2.0)
    await settle()
    assert waiter.done()
    assert waiter.result() == 2.0  # seconds waited, by the injected clock


async def test_waiting_schedules_exactly_one_timer_for_the_moment_the_token_exists(
    spawn: Spawn,
) -> None:
    loop = RecordingLoop(asyncio.get_running_loop())
    clock = FakeClock()
    bucket = TokenBucket(rate=0.5, burst=1, clock=clock, loop=loop)  # type: ignore[arg-type]
    bucket.try_acquire()
    spawn(bucket.acquire())
    await settle()
    assert [delay for delay, _ in loop.timers] == [2.0]
    assert isinstance(bucket._timer, asyncio.TimerHandle)
    assert loop.live_timers() == [bucket._timer]


async def test_timer_on_the_real_loop_is_a_timer_handle(spawn: Spawn) -> None:
    bucket = TokenBucket(rate=0.5, burst=1, clock=FakeClock())
    bucket.try_acquire()
    spawn(bucket.acquire())
    await settle()
    assert isinstance(bucket._timer, asyncio.TimerHandle)


def fire_timer(bucket: TokenBucket) -> None:
    """What the event loop does when the bucket's timer is due: the handle is
    used up and its callback runs."""
    handle = bucket._timer
    assert handle is not None
    handle.cancel()  # keep the real loop from running it a second time
    bucket.wake()


async def test_many_waiters_share_one_live_timer(spawn: Spawn) -> None:
    loop = RecordingLoop(asyncio.get_running_loop())
    clock = FakeClock()
    bucket = TokenBucket(rate=0.5, burst=1, clock=clock, loop=loop)  # type: ignore[arg-type]
    bucket.try_acquire()
    waiters = [spawn(bucket.acquire()) for _ in range(5)]
    await settle()
    assert len(loop.live_timers()) == 1

    clock.now = 2.0
    fire_timer(bucket)  # grants the first, re-arms once for the second
    await settle()
    assert [w.done() for w in waiters] == [True, False, False, False, False]
    assert len(loop.live_timers()) == 1
    assert loop.timers[-1][0] == 2.0


async def test_direct_wake_leaves_exactly_one_live_timer(spawn: Spawn) -> None:
    loop = RecordingLoop(asyncio.get_running_loop())
    clock = FakeClock()
    bucket = TokenBucket(rate=0.5, burst=1, clock=clock, loop=loop)  # type: ignore[arg-type]
    bucket.try_acquire()
    spawn(bucket.acquire())
    spawn(bucket.acquire())
    await settle()

    step(clock, bucket, 2.0)
    await settle()
    assert loop.live_timers() == [bucket._timer]


async def test_stepping_the_clock_alone_grants_nothing_and_arms_nothing(spawn: Spawn) -> None:
    loop = RecordingLoop(asyncio.get_running_loop())
    clock = FakeClock()
    bucket = TokenBucket(rate=0.5, burst=1, clock=clock, loop=loop)  # type: ignore[arg-type]
    bucket.try_acquire()
    waiter = spawn(bucket.acquire())
    await settle()
    clock.now = 10.0
    await settle()
    assert not waiter.done()
    assert len(loop.timers) == 1


async def test_waiters_are_served_in_arrival_order(spawn: Spawn) -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=0.5, burst=3, clock=clock)
    assert [bucket.try_acquire() for _ in range(3)] == [True, True, True]
    served: list[str] = []

    async def wait(name: str) -> float:
        waited = await bucket.acquire()
        served.append(name)
        return waited

    for name in ("a", "b", "c"):
        spawn(wait(name))
        await settle()

    step(clock, bucket, 2.0)
    await settle()
    assert served == ["a"]
    step(clock, bucket, 4.0)
    await settle()
    assert served == ["a", "b"]
    step(clock, bucket, 6.0)
    await settle()
    assert served == ["a", "b", "c"]


async def test_waiters_granted_together_keep_arrival_order(spawn: Spawn) -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=0.5, burst=3, clock=clock)
    for _ in range(3):
        bucket.try_acquire()
    served: list[str] = []

    async def wait(name: str) -> float:
        waited = await bucket.acquire()
        served.append(name)
        return waited

    for name in ("a", "b", "c", "d"):
        spawn(wait(name))
        await settle()

    step(clock, bucket, 6.0)  # three tokens exist at once
    await settle()
    assert served == ["a", "b", "c"]


async def test_try_acquire_does_not_jump_the_queue(spawn: Spawn) -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=0.5, burst=1, clock=clock)
    bucket.try_acquire()
    waiter = spawn(bucket.acquire())
    await settle()
    clock.now = 2.0  # the token exists, the timer has not fired yet
    assert bucket.try_acquire() is False
    bucket.wake()
    await settle()
    assert waiter.result() == 2.0


async def test_set_rate_lower_keeps_accrued_tokens_and_delays_the_waiter(spawn: Spawn) -> None:
    loop = RecordingLoop(asyncio.get_running_loop())
    clock = FakeClock()
    bucket = TokenBucket(rate=1, burst=1, clock=clock, loop=loop)  # type: ignore[arg-type]
    bucket.try_acquire()
    waiter = spawn(bucket.acquire())
    await settle()
    assert loop.timers[-1][0] == 1.0

    clock.now = 0.5  # half a token accrued at 1/s
    bucket.set_rate(0.25)  # the other half now takes 2 s
    assert bucket.rate == 0.25
    assert bucket.delay() == 2.0
    assert loop.timers[-1][0] == 2.0
    assert len(loop.live_timers()) == 1

    step(clock, bucket, 1.0)  # the old rate would have granted here
    await settle()
    assert not waiter.done()
    step(clock, bucket, 2.499)
    await settle()
    assert not waiter.done()
    step(clock, bucket, 2.5)
    await settle()
    assert waiter.result() == 2.5


async def test_cancelled_queued_waiter_passes_the_token_to_the_next(spawn: Spawn) -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=0.5, burst=1, clock=clock)
    bucket.try_acquire()
    first = spawn(bucket.acquire())
    second = spawn(bucket.acquire())
    await settle()
    first.cancel()
    await settle()
    assert first.cancelled()

    step(clock, bucket, 2.0)
    await settle()
    assert second.result() == 2.0
    assert bucket.try_acquire() is False  # one token made, one token spent


async def test_cancelling_the_only_waiter_disarms_the_timer(spawn: Spawn) -> None:
    loop = RecordingLoop(asyncio.get_running_loop())
    bucket = TokenBucket(rate=0.5, burst=1, clock=FakeClock(), loop=loop)  # type: ignore[arg-type]
    bucket.try_acquire()
    waiter = spawn(bucket.acquire())
    await settle()
    waiter.cancel()
    await settle()
    assert bucket._timer is None
    assert loop.live_timers() == []


async def test_waiter_cancelled_after_grant_gives_its_token_back_exactly_once(
    spawn: Spawn,
) -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=0.5, burst=1, clock=clock)
    bucket.try_acquire()
    waiter = spawn(bucket.acquire())
    await settle()

    step(clock, bucket, 2.0)  # token granted to the waiter's future...
    waiter.cancel()  # ...but its task is cancelled before it resumes
    await settle()
    assert waiter.cancelled()
    assert bucket.try_acquire() is True  # the token came back
    assert bucket.try_acquire() is False  # and only one


# ---- holds (10006) and throttling ---------------------------------------------------------


async def test_hold_grants_nothing_until_it_ends_then_one_token_at_once() -> None:
    clock = FakeClock()
    bucket = TokenBucket(10, 5, clock=clock)
    assert bucket.try_acquire()
    bucket.hold(2.0)
    assert not bucket.try_acquire()
    assert bucket.delay() == 2.0
    clock.now = 1.999
    assert not bucket.try_acquire()
    clock.now = 2.0
    assert bucket.try_acquire()  # the window reset: one send right away
    assert not bucket.try_acquire()  # nothing accrued during the hold
    clock.now = 2.1
    assert bucket.try_acquire()


async def test_waiter_queued_during_a_hold_is_granted_at_its_end() -> None:
    clock = FakeClock()
    bucket = TokenBucket(10, 1, clock=clock)
    bucket.hold(1.5)
    waiter = asyncio.ensure_future(bucket.acquire())
    await asyncio.sleep(0)
    clock.now = 1.4
    fire_timer(bucket)
    await asyncio.sleep(0)
    assert not waiter.done()
    clock.now = 1.5
    fire_timer(bucket)
    await asyncio.sleep(0)
    assert waiter.done()
    assert waiter.result() == 1.5


async def test_throttle_slows_the_rate_for_a_while_then_recovers() -> None:
    clock = FakeClock()
    bucket = TokenBucket(10, 1, clock=clock)
    assert bucket.try_acquire()
    bucket.throttle(0.5, 10.0)
    assert bucket.rate == 5.0
    assert bucket.delay() == 0.2
    clock.now = 10.0
    assert bucket.try_acquire()
    assert bucket.rate == 10.0
    assert bucket.delay() == 0.1


# ---- several tokens at once, and the rolling window ------------------------------------------

WINDOW = 1.0 + 1 / 64  # a second plus a margin, exact in binary


def windowed(clock: FakeClock, rate: float = 8, **kw: Any) -> TokenBucket:
    return TokenBucket(rate, burst=int(rate), clock=clock, window_s=WINDOW, **kw)


def test_take_takes_what_exists_up_to_the_ask() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=4, burst=3, clock=clock)
    assert bucket.take(2) == 2
    assert bucket.take(5) == 1
    assert bucket.take(5) == 0
    clock.now = 0.5  # two tokens at 4/s
    assert bucket.take(5) == 2


def test_take_from_a_burst_of_one_is_one_token_at_most() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=4, burst=1, clock=clock)
    clock.now = 1000.0
    assert bucket.take(20) == 1
    assert bucket.take(20) == 0


async def test_take_does_not_jump_the_queue_or_a_hold(spawn: Spawn) -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=0.5, burst=3, clock=clock)
    bucket.hold(1.0)
    assert bucket.take(3) == 0  # three tokens, but held
    spawn(bucket.acquire())
    await settle()
    clock.now = 8.0  # the hold is over, but a waiter is first in line
    assert bucket.take(3) == 0


def test_without_a_window_a_full_burst_and_its_refill_overrun_a_second() -> None:
    """Why the batch lane keeps a log: burst 8 at 8/s grants 15 within one second."""
    clock = FakeClock()
    bucket = TokenBucket(8, burst=8, clock=clock)
    granted = bucket.take(8)
    clock.now = 0.875
    assert granted + bucket.take(8) == 15


def test_a_window_bounds_the_burst_and_its_refill_to_the_limit() -> None:
    clock = FakeClock()
    bucket = windowed(clock)
    assert bucket.take(20) == 8
    clock.now = 1.0  # the bucket is full again, the window is not over
    assert bucket.take(20) == 0
    assert bucket.delay() == 1 / 64
    clock.now = WINDOW
    assert bucket.take(3) == 3
    assert bucket.take(20) == 5
    assert bucket.take(1) == 0


def test_a_windowed_bucket_taken_from_at_every_step_never_overruns_and_uses_it_all() -> None:
    clock = FakeClock()
    bucket = windowed(clock)
    stamps: list[float] = []
    for tick in range(160):  # ten seconds in sixteenths, asking three each time
        clock.now = tick / 16
        stamps += [clock.now] * bucket.take(3)
    for stamp in stamps:
        assert sum(1 for s in stamps if stamp <= s < stamp + WINDOW) <= 8
    assert len(stamps) >= 8 * (10 // WINDOW)  # one full window after another


async def test_a_waiter_behind_a_full_window_is_woken_when_the_oldest_grant_leaves_it(
    spawn: Spawn,
) -> None:
    loop = RecordingLoop(asyncio.get_running_loop())
    clock = FakeClock()
    bucket = windowed(clock, loop=loop)
    assert bucket.take(8) == 8
    clock.now = 1.0
    waiter = spawn(bucket.acquire())
    await settle()
    assert [delay for delay, _ in loop.timers] == [1 / 64]  # one timer, at the window's edge
    step(clock, bucket, WINDOW - 1 / 1024)
    await settle()
    assert not waiter.done()
    step(clock, bucket, WINDOW)
    await settle()
    assert waiter.result() == 1 / 64
    assert bucket.take(20) == 7


async def test_a_grant_given_back_leaves_the_window_too(spawn: Spawn) -> None:
    clock = FakeClock()
    bucket = windowed(clock, rate=1)
    assert bucket.try_acquire()
    waiter = spawn(bucket.acquire())
    await settle()
    step(clock, bucket, 2.0)  # granted to the waiter's future...
    waiter.cancel()  # ...which will not use it
    await settle()
    assert bucket.try_acquire() is True  # token and window room both came back
    assert bucket.try_acquire() is False


def test_a_lower_rate_is_a_lower_limit_for_the_window() -> None:
    clock = FakeClock()
    bucket = windowed(clock)
    assert bucket.take(4) == 4
    bucket.set_rate(4)
    clock.now = 1.0  # tokens exist, but four already went out within the window
    assert bucket.take(8) == 0
    clock.now = 2.0
    assert bucket.take(8) == 4


def test_a_window_must_be_positive() -> None:
    with pytest.raises(ValueError, match="window_s must be > 0"):
        TokenBucket(8, 8, clock=FakeClock(), window_s=0)
