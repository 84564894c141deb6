"""Circuit breaker around the exchange, on an injected clock. Pure.

Counts only venue and infrastructure failures (5xx, timeouts, resets, refused
connections): a venue rejection or an invalid signal says the exchange is
working. Opens after ``failures`` consecutive failures, or when at least
``min_calls`` calls in the last ``window_s`` failed in a ratio of ``ratio`` or
more. Open, it lets nothing through for ``cooldown_s``; then half-open, it lets
exactly one probe through. The probe's success closes it, its failure opens it
again.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from enum import StrEnum

from executor.outcome import Failure, Reply, Verdict, classify

# What a verdict says about the exchange's health: True healthy, False failing,
# None nothing (the request was refused before it was processed).
HEALTH: dict[Verdict, bool | None] = {
    Verdict.ACCEPTED: True,
    Verdict.ALREADY_PLACED: True,
    Verdict.REJECTED: True,
    Verdict.KEY_FAILURE: True,
    Verdict.UNKNOWN: False,
    Verdict.RETRY: None,
    Verdict.IP_BAN: None,
}


def health(reply: Reply) -> bool | None:
    """What one answer says about the exchange. A refused or reset connection is
    an infrastructure failure even though resending is safe."""
    if reply.failure in (Failure.NOT_SENT, Failure.NO_ANSWER):
        return False
    if reply.failure is Failure.HELD:
        return None
    return HEALTH[classify(reply)]


class State(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


Listener = Callable[[State, State, str], None]


class CircuitBreaker:
    def __init__(
        self,
        *,
        clock: Callable[[], float],
        failures: int = 5,
        ratio: float = 0.5,
        window_s: float = 30.0,
        min_calls: int = 10,
        cooldown_s: float = 30.0,
        on_change: Listener | None = None,
    ) -> None:
        self._clock = clock
        self._failures = failures
        self._ratio = ratio
        self._window_s = window_s
        self._min_calls = min_calls
        self._cooldown_s = cooldown_s
        self._on_change = on_change
        self._state = State.CLOSED
        self._consecutive = 0
        self._calls: deque[tuple[float, bool]] = deque()  # (time, failed)
        self._failed_in_window = 0
        self._opened_at = 0.0
        self._probe_out = False
        self.opened_count = 0

    @property
    def state(self) -> State:
        if self._state is State.OPEN and self._clock() >= self._opened_at + self._cooldown_s:
            self._move(State.HALF_OPEN, "cool-down over")
        return self._state

    @property
    def closed(self) -> bool:
        return self.state is State.CLOSED

    def allow(self) -> bool:
        """May a request go now? In half-open, True exactly once: the probe."""
        state = self.state
        if state is State.CLOSED:
            return True
        if state is State.HALF_OPEN and not self._probe_out:
            self._probe_out = True
            return True
        return False

    def retry_after(self) -> float:
        """Seconds until a request may be allowed (an estimate while a probe is out)."""
        state = self.state
        if state is State.CLOSED:
            return 0.0
        if state is State.OPEN:
            return max(0.0, self._opened_at + self._cooldown_s - self._clock())
        return 0.0 if not self._probe_out else 0.2

    def record(self, verdict: Verdict) -> None:
        self.record_health(HEALTH[verdict])

    def record_health(self, healthy: bool | None) -> None:
        if healthy is None:
            if self._state is State.HALF_OPEN:
                self._probe_out = False  # the probe told us nothing: let another go
            return
        if healthy:
            self._success()
        else:
            self._failure()

    def _success(self) -> None:
        self._consecutive = 0
        self._note(failed=False)
        if self._state is State.HALF_OPEN:
            self._move(State.CLOSED, "probe succeeded")

    def _failure(self) -> None:
        self._consecutive += 1
        failed, total = self._note(failed=True)
        if self._state is State.HALF_OPEN:
            self._open("probe failed")
        elif self._state is State.CLOSED:
            if self._consecutive >= self._failures:
                self._open(f"{self._consecutive} consecutive failures")
            elif total >= self._min_calls and failed / total >= self._ratio:
                self._open(f"{failed} of {total} calls failed in {self._window_s:g}s")

    def _note(self, failed: bool) -> tuple[int, int]:
        """Record one call; (failed, total) within the window. Constant time per
        call: the failure count is kept as calls enter and leave the window."""
        now = self._clock()
        self._calls.append((now, failed))
        self._failed_in_window += failed
        while self._calls and self._calls[0][0] <= now - self._window_s:
            self._failed_in_window -= self._calls.popleft()[1]
        return self._failed_in_window, len(self._calls)

    def _open(self, reason: str) -> None:
        self._opened_at = self._clock()
        self.opened_count += 1
        self._move(State.OPEN, reason)

    def _move(self, new: State, reason: str) -> None:
        old = self._state
        self._state = new
        self._probe_out = False
        if new is State.CLOSED:
            self._consecutive = 0
            self._calls.clear()
            self._failed_in_window = 0
        if old is not new and self._on_change is not None:
            self._on_change(old, new, reason)
