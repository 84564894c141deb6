"""Token bucket on an injected clock, and how a budget answers the exchange's headers.

Tokens accrue continuously at ``rate`` per second up to ``burst``. A waiter
is woken once, at the moment its token exists (one timer per waiter, not a
polling loop), and waiters are served in arrival order. With ``window_s`` a
bucket also keeps a log of its grants and never grants more than its rate
(rounded up) within that rolling window: Bybit's rule, which a burst above one
would otherwise break (a full bucket plus a window's refill).

``follow`` is the one policy for what an order answer's ``X-Bapi-Limit*``
headers (and a 10006) change: every budget, local or shared, applies it.
``LocalBudget`` is the budget of a process that paces alone.

Batch lane: ``POST /v5/order/create-batch`` has a budget of its own, one unit
per order in the batch. Its lane is ``batch_lane(category)`` ("linear:batch")
on a budget built for it (``LocalBudget.batches``, ``SharedBudget.batches``):
burst equal to the limit, the rolling window enforcing Bybit's count, and
``acquire(lane, within_s, units=n)`` granting up to ``n`` units at once.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

from executor.riding import Rider

# After a 10006 the whole account slows down for a while, not just one order.
THROTTLE_FACTOR = 0.8
THROTTLE_S = 10.0
# A 10006 without X-Bapi-Limit-Reset-Timestamp: Bybit's documented fallback.
RESET_FALLBACK_S = 2.0
BATCH_SUFFIX = ":batch"


def batch_lane(category: str) -> str:
    """The budget lane of ``category``'s batch endpoint: a name of its own, so its
    state (and a shared budget's Redis keys) are apart from the single orders'."""
    return f"{category}{BATCH_SUFFIX}"


class TokenBucket:
    def __init__(
        self,
        rate: float | Decimal,
        burst: int = 1,
        *,
        clock: Callable[[], float],
        loop: asyncio.AbstractEventLoop | None = None,
        window_s: float | None = None,
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        if window_s is not None and window_s <= 0:
            raise ValueError("window_s must be > 0")
        self._rate = float(rate)
        self._burst = float(burst)
        self._clock = clock
        self._tokens = float(burst)
        self._stamp = clock()
        self._waiters: deque[asyncio.Future[float]] = deque()  # result: the grant's time
        self._window_s = window_s
        self._granted: deque[float] = deque()  # with a window: its grants' times, oldest first
        self._held_until = float("-inf")  # no grants before this clock time
        self._base_rate = self._rate
        self._throttled_until = float("-inf")
        self._timer: asyncio.TimerHandle | None = None
        self._loop = loop

    @property
    def rate(self) -> float:
        return self._rate

    @property
    def base_rate(self) -> float:
        """The rate without a throttle: the constructor's, or the last ``set_rate``."""
        return self._base_rate

    def set_rate(self, rate: float | Decimal) -> None:
        """Change the refill rate (a lower account limit); tokens so far are kept."""
        if rate <= 0:
            raise ValueError("rate must be > 0")
        self._refill()
        self._rate = self._base_rate = float(rate)
        self._throttled_until = float("-inf")
        self._reschedule()

    def hold(self, seconds: float) -> None:
        """Grant nothing for ``seconds`` (the exchange said the window is spent)."""
        self._refill()
        self._held_until = max(self._held_until, self._clock() + seconds)
        self._tokens = 0.0
        self._reschedule()

    def throttle(self, factor: float, seconds: float) -> None:
        """Run at ``factor`` of the configured rate for ``seconds``, then recover."""
        self._refill()
        self._rate = max(self._base_rate * factor, self._base_rate / 100)
        self._throttled_until = self._clock() + seconds
        self._reschedule()

    def _refill(self) -> None:
        now = self._clock()
        if now >= self._throttled_until and self._rate != self._base_rate:
            self._rate = self._base_rate
        if self._stamp < self._held_until <= now:
            # The hold ends with the exchange's window reset: one send may go at once.
            self._tokens = max(self._tokens, 1.0)
        elapsed = max(0.0, now - max(self._stamp, self._held_until))
        self._stamp = now
        self._tokens = min(self._burst, self._tokens + elapsed * self._rate)

    def _limit(self) -> int:
        return math.ceil(self._base_rate)

    def _in_window(self, now: float) -> int:
        """Grants within the window ending now (the same sum decides here and in ``delay``)."""
        assert self._window_s is not None
        while self._granted and self._granted[0] + self._window_s <= now:
            self._granted.popleft()
        return len(self._granted)

    def _free(self) -> int:
        """Whole tokens that may be granted now, queue aside (after ``_refill``)."""
        now = self._clock()
        if now < self._held_until:
            return 0
        free = int(self._tokens)
        if self._window_s is not None:
            free = min(free, self._limit() - self._in_window(now))
        return free

    def _take(self, units: int) -> float:
        now = self._clock()
        self._tokens -= units
        if self._window_s is not None:
            self._granted.extend(now for _ in range(units))
        return now

    def try_acquire(self) -> bool:
        """Take a token now if one exists and nobody is queued before us."""
        return self.take(1) == 1

    def take(self, most: int) -> int:
        """Take up to ``most`` tokens that exist now, if nobody is queued before us;
        how many were taken (0 if none)."""
        self._refill()
        if self._waiters:
            return 0
        units = max(0, min(most, self._free()))
        if units:
            self._take(units)
        return units

    def delay(self) -> float:
        """Seconds until the next token exists (0 if one exists now)."""
        self._refill()
        now = self._clock()
        held = self._held_until - now
        if held > 0:
            return held  # the hold's end grants a token
        wait = max(0.0, (1.0 - self._tokens) / self._rate)
        if self._window_s is not None:
            over = self._in_window(now) - self._limit()
            if over >= 0:
                wait = max(wait, self._granted[over] + self._window_s - now)
        return wait

    async def acquire(self) -> float:
        """Wait for a token; return the seconds waited (by the injected clock)."""
        if self.try_acquire():
            return 0.0
        started = self._clock()
        loop = self._loop or asyncio.get_running_loop()
        waiter: asyncio.Future[float] = loop.create_future()
        self._waiters.append(waiter)
        self._reschedule()
        try:
            await waiter
        except BaseException:
            if waiter in self._waiters:
                self._waiters.remove(waiter)
                self._reschedule()
            elif waiter.done() and not waiter.cancelled():
                # Granted a token we will not use: give it back.
                self._tokens = min(self._burst, self._tokens + 1.0)
                if waiter.result() in self._granted:
                    self._granted.remove(waiter.result())
                self._reschedule()
            raise
        return self._clock() - started

    def wake(self) -> None:
        """Grant every token that exists now to queued waiters, then re-arm.

        Called by the timer; tests that step a fake clock call it directly.
        """
        if self._timer is not None:
            self._timer.cancel()  # called directly rather than by the timer
            self._timer = None
        self._refill()
        while self._waiters and self._free() >= 1:
            waiter = self._waiters.popleft()
            if waiter.done():
                continue
            waiter.set_result(self._take(1))
        self._reschedule()

    def _reschedule(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        while self._waiters and self._waiters[0].done():
            self._waiters.popleft()
        if not self._waiters:
            return
        loop = self._loop or asyncio.get_running_loop()
        self._timer = loop.call_later(self.delay(), self.wake)


@dataclass(frozen=True, slots=True)
class Venue:
    """What one answer's rate-limit headers said: ``X-Bapi-Limit``,
    ``X-Bapi-Limit-Status`` and the reset, as seconds from now."""

    limit: int | None = None
    remaining: int | None = None
    reset_in_s: float | None = None


@dataclass(frozen=True, slots=True)
class Step:
    """What a budget changes after one answer."""

    hold_s: float = 0.0  # grant nothing for this long
    slow: bool = False  # a 10006: run at THROTTLE_FACTOR for THROTTLE_S
    cap: int | None = None  # the exchange's limit, below the configured rate: pace at it
    uncap: bool = False  # the exchange's limit is back at or above the configured rate

    def __bool__(self) -> bool:
        return self.hold_s > 0 or self.slow or self.cap is not None or self.uncap


def follow(
    configured: float, cap: int | None, venue: Venue, *, refused: bool, next_in_s: float
) -> Step:
    """The budget's answer to one order answer.

    ``cap`` is the exchange limit the budget paces at now (None: the configured
    rate). ``next_in_s`` is how long until the budget would grant anyway: a
    spent window that resets sooner needs no hold. ``refused``: the answer was
    a 10006, so hold until the reset and slow down.
    """
    new_cap, uncap = None, False
    limit = venue.limit
    if limit is not None and limit > 0:
        if limit < configured and limit != cap:
            new_cap = limit
        elif limit >= configured and cap is not None:
            uncap = True
    hold = 0.0
    reset = venue.reset_in_s
    if refused:
        hold = max(0.0, RESET_FALLBACK_S if reset is None else reset)
    elif venue.remaining == 0 and reset is not None and reset > max(0.0, next_in_s):
        hold = reset
    return Step(hold_s=hold, slow=refused, cap=new_cap, uncap=uncap)


class LocalBudget:
    """The account's budget paced by this process alone: one TokenBucket per category.

    Right for a single replica. With several, each paces on its own and Bybit
    counts their sum; ``executor.budget.SharedBudget`` shares one through Redis.
    A multi-unit ``acquire`` waits for one token and takes what else exists then:
    with burst 1 that is one.
    """

    def __init__(
        self, rate: float | Decimal, make: Callable[[], TokenBucket], *, window_s: float = 1.0
    ) -> None:
        self._rate = float(rate)
        self._make = make
        self._window_s = window_s
        self._buckets: dict[str, TokenBucket] = {}
        self._caps: dict[str, int] = {}

    @classmethod
    def paced(cls, rate: float | Decimal, burst: int, *, clock: Callable[[], float]) -> LocalBudget:
        return cls(rate, lambda: TokenBucket(rate, burst, clock=clock))

    @classmethod
    def batches(
        cls, rate: float | Decimal, *, clock: Callable[[], float], margin_s: float = 0.01
    ) -> LocalBudget:
        """The budget of batch lanes (``batch_lane``): the whole limit at once, and
        never more than the limit within Bybit's second plus ``margin_s``."""
        burst, window_s = math.ceil(rate), 1.0 + margin_s
        return cls(rate, lambda: TokenBucket(rate, burst, clock=clock, window_s=window_s))

    @classmethod
    def of(cls, bucket: TokenBucket) -> LocalBudget:
        """One bucket for every category."""
        return cls(bucket.base_rate, lambda: bucket)

    def bucket(self, category: str) -> TokenBucket:
        bucket = self._buckets.get(category)
        if bucket is None:
            bucket = self._buckets[category] = self._make()
        return bucket

    async def acquire(self, category: str, within_s: float, units: int = 1) -> int:
        """Wait for a token, then take up to ``units`` in all that exist now; how
        many (0 when none came within ``within_s``)."""
        if units < 1:
            raise ValueError("units must be >= 1")
        bucket = self.bucket(category)
        if not bucket.try_acquire():
            if within_s <= 0:
                return 0
            try:
                async with asyncio.timeout(within_s):
                    await bucket.acquire()
            except TimeoutError:
                return 0
        return 1 + bucket.take(units - 1)

    def ahead(self, category: str, units: int) -> Rider | None:
        """Nothing to ask ahead for: a local token costs no round trip."""
        return None

    async def heard(self, category: str, venue: Venue, *, refused: bool = False) -> None:
        bucket = self.bucket(category)
        cap = self._caps.get(category)
        step = follow(self._rate, cap, venue, refused=refused, next_in_s=bucket.delay())
        if step.cap is not None:
            self._caps[category] = step.cap
            bucket.set_rate(step.cap)
            if step.cap < (self._rate if cap is None else cap):
                # What went out at the higher rate must leave Bybit's window first.
                bucket.hold(self._window_s)
        elif step.uncap:
            del self._caps[category]
            bucket.set_rate(self._rate)
        if step.hold_s > 0:
            bucket.hold(step.hold_s)
        if step.slow:
            bucket.throttle(THROTTLE_FACTOR, THROTTLE_S)
