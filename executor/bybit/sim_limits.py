"""Rolling-window rate limits on an injected clock (epoch ms passed in by the caller)."""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable
from typing import NamedTuple

# What the limit headers say when a budget is switched off (benchmarks).
UNLIMITED_HEADER_VALUE = 1_000_000


class Admission(NamedTuple):
    granted: int
    limit: int
    remaining: int
    reset_ms: int

    def headers(self) -> dict[str, str]:
        return {
            "X-Bapi-Limit": str(self.limit),
            "X-Bapi-Limit-Status": str(self.remaining),
            "X-Bapi-Limit-Reset-Timestamp": str(self.reset_ms),
        }


class RollingWindow:
    """Counts admissions per key over the last ``window_ms``.

    An admission at ``t`` occupies a slot for ``now`` in ``[t, t + window_ms)``.
    Refused requests take no slot, so a client hammering a full window does not
    push its own reset further away.
    """

    def __init__(self, window_ms: int) -> None:
        self.window_ms = window_ms
        self._hits: dict[Hashable, deque[int]] = {}

    def acquire(self, key: Hashable, limit: int | None, now_ms: int, units: int = 1) -> Admission:
        if limit is None:
            return Admission(units, UNLIMITED_HEADER_VALUE, UNLIMITED_HEADER_VALUE, now_ms)
        hits = self._hits.get(key)
        if hits is None:
            hits = self._hits[key] = deque()
        edge = now_ms - self.window_ms
        while hits and hits[0] <= edge:
            hits.popleft()
        granted = min(units, max(0, limit - len(hits)))
        for _ in range(granted):
            hits.append(now_ms)
        remaining = max(0, limit - len(hits))
        # Bybit reports "now" while budget is left, otherwise the moment a slot frees.
        if remaining > 0:
            reset = now_ms
        elif hits:
            reset = hits[0] + self.window_ms
        else:
            reset = now_ms + self.window_ms
        return Admission(granted, limit, remaining, reset)

    def clear(self) -> None:
        self._hits.clear()


class IpGuard:
    """Bybit's per-IP limit: a breach answers 403 and bans the address for ``ban_ms``."""

    def __init__(self, window_ms: int, ban_ms: int) -> None:
        self.ban_ms = ban_ms
        self._window = RollingWindow(window_ms)
        self._banned_until: dict[str, int] = {}

    def admit(self, ip: str, now_ms: int, limit: int | None) -> bool:
        if limit is None:
            return True
        until = self._banned_until.get(ip)
        if until is not None:
            if now_ms < until:
                return False
            del self._banned_until[ip]
        if self._window.acquire(ip, limit, now_ms).granted:
            return True
        if self.ban_ms > 0:
            self._banned_until[ip] = now_ms + self.ban_ms
        return False

    def clear(self) -> None:
        self._window.clear()
        self._banned_until.clear()
