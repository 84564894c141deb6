"""Token bucket on an injected clock.

Tokens accrue continuously at ``rate`` per second up to ``burst``. A waiter
is woken once, at the moment its token exists (one timer per waiter, not a
polling loop), and waiters are served in arrival order.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from decimal import Decimal


class TokenBucket:
    def __init__(
        self,
        rate: float | Decimal,
        burst: int = 1,
        *,
        clock: Callable[[], float],
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self._rate = float(rate)
        self._burst = float(burst)
        self._clock = clock
        self._tokens = float(burst)
        self._stamp = clock()
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._held_until = float("-inf")  # no grants before this clock time
        self._base_rate = self._rate
        self._throttled_until = float("-inf")
        self._timer: asyncio.TimerHandle | None = None
        self._loop = loop

    @property
    def rate(self) -> float:
        return self._rate

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

    def try_acquire(self) -> bool:
        """Take a token now if one exists and nobody is queued before us."""
        self._refill()
        if not self._waiters and self._tokens >= 1.0 and self._clock() >= self._held_until:
            self._tokens -= 1.0
            return True
        return False

    def delay(self) -> float:
        """Seconds until the next token exists (0 if one exists now)."""
        self._refill()
        held = self._held_until - self._clock()
        if held > 0:
            return held  # the hold's end grants a token
        return max(0.0, (1.0 - self._tokens) / self._rate)

    async def acquire(self) -> float:
        """Wait for a token; return the seconds waited (by the injected clock)."""
        if self.try_acquire():
            return 0.0
        started = self._clock()
        loop = self._loop or asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
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
        while self._waiters and self._tokens >= 1.0 and self._clock() >= self._held_until:
            waiter = self._waiters.popleft()
            if waiter.done():
                continue
            self._tokens -= 1.0
            waiter.set_result(None)
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
