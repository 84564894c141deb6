"""The account's order budget, shared by every replica through Redis.

Bybit counts order creations per account (UID) and category over a rolling
second, whichever replica sends them. One Lua script keeps, per budget name
and category, the pacing schedule (GCRA: the earliest moment of the next
grant) and the log of the grants of the last window, and reads the time from
Redis (``TIME``), so the replicas' clocks do not matter. A grant needs both:
the schedule's moment has come, and fewer than the limit were granted within
the window. The window is Bybit's second plus a margin, so that network jitter
between the grant and the exchange's arrival stamp cannot put one more order
into the exchange's second.

A refusal names the wait; the caller sleeps exactly that long and asks again.
Within one process the waiters of a category queue on one lock, so they are
served in arrival order and only the first asks Redis: one EVALSHA per order
while the budget has room. A hold after a 10006, the slower pace that follows
it, and a lower limit learnt from ``X-Bapi-Limit`` are written to the same
state, so every replica follows them.

Redis unreachable: nothing is granted, so nothing is sent. An order waits
(asking again with capped backoff) until its signal's TTL is used up and then
ends ``expired``: never sent, never lost.

Several units at once (``acquire(category, within_s, units=n)``): once one is
due, the script grants as many as both rules allow right now, up to ``n``: the
schedule's tolerance (each unit moves it one interval on) and the window's room
(each unit is one entry in the log). With burst 1 that is always one.

Asked ahead (``ahead``): when idle workers are about to send signals alone,
their grants are asked for in the same script call as the signals' dedup
claims (``Dedup.claim_many``'s rider), so each order costs one Redis round
trip before its request, not two. The units wait as spare for half the
window's margin; an order that turned out a duplicate leaves its unit to lapse.

Batch lane: ``POST /v5/order/create-batch`` has a budget of its own, one unit
per order. A budget built by ``SharedBudget.batches`` (burst equal to the limit:
the log alone keeps Bybit's count) used with the lane
``executor.limiter.batch_lane(category)`` ("linear:batch", so keys of its own)
grants a batch's units together::

    batches = SharedBudget.batches(redis, name=name, rate=batch_rate, margin_s=margin_s)
    lane = batch_lane("linear")
    granted = await batches.acquire(lane, left_s, units=len(orders))  # 0..len(orders)
    ...send the first ``granted`` orders in one request, keep the rest queued...
    await batches.heard(lane, venue, refused=...)  # the batch answer's headers
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from executor.limiter import THROTTLE_FACTOR, THROTTLE_S, Venue, follow
from executor.resp import Lean
from executor.riding import Rider

log = structlog.get_logger("executor")

PREFIX = "executor:budget"
CALL_TIMEOUT_S = 2.0  # one script call; a hung Redis counts as unreachable
MAX_UNITS = 64  # asked for in one call on behalf of this process's waiting callers
RETRY_BASE_S = 0.05
RETRY_CAP_S = 1.0
STATE_TTL_S = 60  # a learnt limit outlives a quiet minute; then the keys expire

# KEYS[1]: state hash (tat: the schedule's next grant, µs; cap: the exchange's
#   lower limit; slow_until, slow: the throttle after a 10006).
# KEYS[2]: sorted set of the grants of the last window, scored by their time (µs).
# ARGV: op, rate per second, burst, window (µs), then
#   take:   grant id, units (the most to grant)
#   adjust: hold (µs), cap (-1 keep, 0 clear, n set), slow factor, slow for (µs)
#   and last, the state's TTL (s).
# Replies (times in µs, now by Redis's clock):
#   take:   {units granted, until the next could come, cap|-1, now} or {0, to wait, cap|-1, now}
#   adjust: {cap|-1, now}
SCRIPT = """
local function fmt(x) return string.format('%.0f', x) end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local op = ARGV[1]
local rate, burst, window = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local s = redis.call('HMGET', KEYS[1], 'tat', 'cap', 'slow_until', 'slow')
local tat = tonumber(s[1]) or now
local cap = tonumber(s[2])
local slow_until = tonumber(s[3]) or 0
local slow = tonumber(s[4]) or 1
if op == 'adjust' then
  local new_cap = tonumber(ARGV[6])
  if new_cap == 0 then
    cap = nil
    redis.call('HDEL', KEYS[1], 'cap')
  elseif new_cap > 0 then
    cap = new_cap
    redis.call('HSET', KEYS[1], 'cap', ARGV[6])
  end
  local slow_for = tonumber(ARGV[8])
  if slow_for > 0 then
    slow, slow_until = tonumber(ARGV[7]), now + slow_for
    redis.call('HSET', KEYS[1], 'slow', ARGV[7], 'slow_until', fmt(slow_until))
  end
end
local pace = rate
if cap and cap < pace then pace = cap end
local limit = math.ceil(pace)
if now < slow_until then pace = pace * slow end
local interval = 1000000 / pace
local tolerance = (burst - 1) * interval
local function keep()
  redis.call('HSET', KEYS[1], 'tat', fmt(tat))
  local ttl = math.max(tat, slow_until, now) - now + window + tonumber(ARGV[#ARGV]) * 1000000
  redis.call('PEXPIRE', KEYS[1], fmt(math.ceil(ttl / 1000)))
end
local function log_edge(count)
  if count < limit then return 0 end
  local edge = redis.call('ZRANGE', KEYS[2], count - limit, count - limit, 'WITHSCORES')
  return tonumber(edge[2]) + window
end
if op == 'adjust' then
  local hold = tonumber(ARGV[5])
  if hold > 0 then tat = math.max(tat, now + hold + tolerance) end
  keep()
  return {cap or -1, now}
end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', fmt(now - window))
local count = redis.call('ZCARD', KEYS[2])
local at = math.max(tat - tolerance, log_edge(count))
if at > now then return {0, math.ceil(at - now), cap or -1, now} end
-- late by up to a tenth of the interval (the sleep, the round trip): keep the schedule
tat = math.max(tat, now - interval / 10)
-- one is due; as many as the schedule's tolerance and the window's room allow now
local fit = math.floor((now + tolerance - tat) / interval + 1e-6) + 1
local units = math.min(tonumber(ARGV[6]), limit - count, fit)
tat = tat + units * interval
for i = 1, units do
  redis.call('ZADD', KEYS[2], fmt(now), i == 1 and ARGV[5] or ARGV[5] .. '.' .. i)
end
redis.call('PEXPIRE', KEYS[2], fmt(math.ceil(window / 1000) + 1000))
keep()
local next_at = math.max(tat - tolerance, log_edge(count + units))
return {units, math.max(0, math.ceil(next_at - now)), cap or -1, now}
"""

# An awaitable script call, as `Redis.register_script` returns it.
Script = Callable[..., Awaitable[Any]]

UNAVAILABLE = (RedisError, OSError)  # OSError: also ConnectionError and TimeoutError


def budget_keys(name: str, category: str) -> list[str]:
    """The two keys of one budget: its state and its log of grants."""
    base = f"{PREFIX}:{name}:{category}"
    return [base, f"{base}:log"]


def account_name(user_id: str) -> str:
    """The budget of a Bybit account, named by its userID."""
    return f"uid-{user_id}"


def key_name(api_key: str) -> str:
    """The budget of an API key whose account is not known (a digest, not the key)."""
    return f"key-{hashlib.sha256(api_key.encode()).hexdigest()[:16]}"


@dataclass
class _Lane:
    """One category's state in this process."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    cap: int | None = None  # the exchange's lower limit, as last read from Redis
    # By the local clock: nothing is granted before ``next_at`` (a lower bound, read
    # from before the call); ``ready_at`` is when asking again is worth a call.
    next_at: float = float("-inf")
    ready_at: float = float("-inf")
    # Units asked for by the callers inside ``acquire`` (the lock's holder and
    # its queue): the holder asks Redis for all of them in one call, and the
    # grants beyond its own wait here for the next holders.
    asking: int = 0
    spare: int = 0
    spare_at: float = float("-inf")


class SharedBudget:
    def __init__(
        self,
        script: Script,
        *,
        name: str,
        rate: float | Decimal,
        burst: int = 1,
        margin_s: float = 0.01,
        window_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        call_timeout_s: float = CALL_TIMEOUT_S,
    ) -> None:
        if rate <= 0 or burst < 1 or margin_s < 0:
            raise ValueError("rate must be > 0, burst >= 1 and margin_s >= 0")
        self.name = name
        self._script = script
        self._rate = float(rate)
        self._burst = burst
        self._window_us = round((window_s + margin_s) * 1_000_000)
        # A grant handed on to a later caller is logged at its grant time: it must
        # be sent well within the window's margin, or it is dropped unused.
        self._spare_s = margin_s / 2
        self._clock = clock
        self._sleep = sleep
        self._call_timeout_s = call_timeout_s
        self._lanes: dict[str, _Lane] = {}
        self._id = uuid.uuid4().hex[:12]
        self._grants = 0

    @classmethod
    def on(cls, redis: Redis | Lean, **options: Any) -> SharedBudget:
        return cls(redis.register_script(SCRIPT), **options)

    @classmethod
    def batches(
        cls, redis: Redis | Lean, *, name: str, rate: float | Decimal, **options: Any
    ) -> SharedBudget:
        """The budget of batch lanes (``batch_lane``): burst equal to the limit, so
        a batch's units come at once and the window alone keeps Bybit's count."""
        return cls.on(redis, name=name, rate=rate, burst=math.ceil(rate), **options)

    def keys(self, category: str) -> list[str]:
        return budget_keys(self.name, category)

    def _lane(self, category: str) -> _Lane:
        lane = self._lanes.get(category)
        if lane is None:
            lane = self._lanes[category] = _Lane()
        return lane

    def _argv(self, op: str, *args: str | int | float) -> list[Any]:
        return [op, self._rate, self._burst, self._window_us, *args, STATE_TTL_S]

    async def _call(self, category: str, op: str, *args: str | int | float) -> list[int]:
        async with asyncio.timeout(self._call_timeout_s):
            reply = await self._script(keys=self.keys(category), args=self._argv(op, *args))
        return [int(x) for x in reply]

    async def acquire(self, category: str, within_s: float, units: int = 1) -> int:
        """Wait for a grant, of up to ``units`` at once; how many were granted: 0,
        as soon as that is clear, when none can come within ``within_s`` (the
        exchange's window or Redis will not allow it)."""
        if units < 1:
            raise ValueError("units must be >= 1")
        deadline = self._clock() + within_s
        lane = self._lane(category)
        lane.asking += units
        try:
            return await self._acquire(category, lane, deadline, units)
        finally:
            lane.asking -= units

    async def _acquire(self, category: str, lane: _Lane, deadline: float, units: int) -> int:
        async with lane.lock:
            if lane.spare:
                if self._spare_fresh(lane):
                    mine = min(units, lane.spare)
                    lane.spare -= mine
                    return mine
                lane.spare = 0  # too old to be sent within the window's margin: unused
            failures = 0
            while True:
                left = deadline - self._clock()
                if left <= 0:
                    return 0
                early = lane.ready_at - self._clock()
                if early > 0:
                    # This process's last grant says when the next can be: no call before.
                    if early >= left:
                        return 0
                    await self._sleep(early)
                    continue
                try:
                    granted, micros = await self._take(category, lane, lane.asking)
                except UNAVAILABLE as exc:
                    failures += 1
                    delay = min(RETRY_CAP_S, RETRY_BASE_S * 2 ** (failures - 1))
                    log.warning(
                        "budget.unavailable",
                        error=type(exc).__name__,
                        budget=self.name,
                        category=category,
                        retry_in_s=delay,
                    )
                    if delay >= left:
                        return 0
                    await self._sleep(delay)
                    continue
                if granted:
                    mine = min(units, granted)
                    lane.spare, lane.spare_at = granted - mine, self._clock()
                    return mine
                wait = micros / 1_000_000
                if wait >= left:
                    return 0
                await self._sleep(wait)

    def _spare_fresh(self, lane: _Lane) -> bool:
        """The lane's spare units may still be sent within the window's margin."""
        return self._clock() - lane.spare_at <= self._spare_s

    async def _take(self, category: str, lane: _Lane, units: int) -> tuple[int, int]:
        """One take call (the lane's lock held): (units granted, µs until the next
        could come, or to wait when none was)."""
        asked = self._clock()
        reply = await self._call(category, "take", self._grant_id(), min(units, MAX_UNITS))
        return self._granted(category, lane, asked, reply)

    def _grant_id(self) -> str:
        self._grants += 1
        return f"{self._id}:{self._grants}"

    def _granted(
        self, category: str, lane: _Lane, asked: float, reply: list[int]
    ) -> tuple[int, int]:
        granted, micros, cap, _now = reply
        self._note_cap(category, lane, cap)
        if granted:
            lane.next_at = asked + micros / 1_000_000
            lane.ready_at = self._clock() + micros / 1_000_000
        return granted, micros

    def ahead(self, category: str, units: int) -> Rider | None:
        """A take of up to ``units`` to ride along another script call (the claim
        of the signals these grants are for), so that their callers' ``acquire``
        costs no round trip of its own. What is granted waits as spare, for as
        long as a handed-on grant may, then lapses unused. None when the lane
        must wait, or holds spare units enough."""
        lane = self._lane(category)
        now = self._clock()
        if units < 1 or (self._spare_fresh(lane) and lane.spare >= units) or lane.ready_at > now:
            return None

        def done(reply: list[Any]) -> None:
            granted, _micros = self._granted(category, lane, now, [int(x) for x in reply])
            if not granted:
                return
            if lane.spare and self._spare_fresh(lane):
                lane.spare += granted  # dated by the older: lapses no later than they would
            else:
                lane.spare, lane.spare_at = granted, self._clock()

        argv = self._argv("take", self._grant_id(), min(units, MAX_UNITS))
        return Rider(SCRIPT, self.keys(category), argv, done)

    async def heard(self, category: str, venue: Venue, *, refused: bool = False) -> None:
        """Share what an order answer's headers say; one script call, only when
        something changes."""
        lane = self._lane(category)
        step = follow(
            self._rate, lane.cap, venue, refused=refused, next_in_s=lane.next_at - self._clock()
        )
        if not step:
            return
        cap = step.cap if step.cap is not None else (0 if step.uncap else -1)
        asked = self._clock()
        try:
            new_cap, _now = await self._call(
                category,
                "adjust",
                round(step.hold_s * 1_000_000),
                cap,
                THROTTLE_FACTOR,
                round(THROTTLE_S * 1_000_000) if step.slow else 0,
            )
        except UNAVAILABLE as exc:
            # Not shared: the next 10006 (or spent window) tells it again.
            log.warning(
                "budget.unavailable", error=type(exc).__name__, budget=self.name, during="adjust"
            )
            return
        self._note_cap(category, lane, new_cap)
        lane.next_at = max(lane.next_at, asked + step.hold_s)
        if refused or step.hold_s > 0:
            (log.warning if refused else log.info)(
                "budget.hold",
                budget=self.name,
                category=category,
                hold_s=round(step.hold_s, 3),
                slow_s=THROTTLE_S if step.slow else 0,
                reason="10006" if refused else "window spent",
            )

    def _note_cap(self, category: str, lane: _Lane, cap: int) -> None:
        known = cap if cap > 0 else None
        if known != lane.cap:
            lane.cap = known
            log.warning(
                "budget.limit",
                budget=self.name,
                category=category,
                limit=known if known is not None else self._rate,
                source="exchange" if known is not None else "settings",
            )
