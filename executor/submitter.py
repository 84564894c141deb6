"""One signal through the checks, the limiter, the keys, the client and its retries.

Every exchange answer goes through ``classify``; what happens next is read
from the verdict alone. A resend always carries the same orderLinkId, and an
answer whose outcome is unknown is reconciled by looking the order up before
anything is sent again. Local gates (kill switch, risk, instrument rules) run
before a rate-limit token is spent; the IP ban and the circuit breaker hold
requests back without counting them as attempts.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from executor.bybit.client import Answer, ApiKey, BybitClient
from executor.keys import KeyPool
from executor.limiter import TokenBucket
from executor.observe import NO_OBSERVER, Observer
from executor.outcome import (
    RATE_LIMIT_CODE,
    TIMESTAMP_CODE,
    Failure,
    Verdict,
    classify,
    server_timestamp_ms,
)
from executor.signals import Signal

RATE_LIMIT_FALLBACK_MS = 2000
LOOKUP_ATTEMPTS = 5
# After a 10006 the whole account slows down for a while, not just this order.
THROTTLE_FACTOR = 0.8
THROTTLE_S = 10.0

# The order body to send, or the reason it must not be sent (risk, instrument rules).
Prepare = Callable[[Signal], Awaitable[dict[str, Any] | str]]


async def plain_body(signal: Signal) -> dict[str, Any] | str:
    return signal.order_body()


@dataclass(frozen=True, slots=True)
class Outcome:
    """A terminal outcome, as written to the results stream."""

    status: str
    order_id: str = ""
    ret_code: int | None = None
    ret_msg: str = ""
    key: str = ""
    attempts: int = 0


class Unresolved(Exception):
    """The order may exist and could not be looked up: leave the entry pending."""


def backoff_s(attempt: int, *, base: float = 0.05, cap: float = 2.0, rng: random.Random) -> float:
    """Exponential backoff with full jitter; ``attempt`` counts from 1."""
    return rng.uniform(0, min(cap, base * 2 ** (attempt - 1)))


class Submitter:
    def __init__(
        self,
        client: BybitClient,
        keys: KeyPool | Sequence[ApiKey],
        limiter: TokenBucket,
        *,
        max_attempts: int = 5,
        dry_run: bool = False,
        halted: Callable[[], str | None] = lambda: None,
        prepare: Prepare = plain_body,
        wall_ms: Callable[[], float] = lambda: time.time() * 1000,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        rng: random.Random | None = None,
        observer: Observer = NO_OBSERVER,
    ) -> None:
        self._observer = observer
        if isinstance(keys, KeyPool):
            self._pool: KeyPool | None = keys
        elif keys:
            self._pool = KeyPool(keys)
            self._pool.same_account = True  # a plain list is trusted as one account
        elif dry_run:
            self._pool = None
        else:
            raise ValueError("at least one API key is needed to submit orders")
        self._client = client
        self._limiter = limiter
        self._max_attempts = max_attempts
        self._dry_run = dry_run
        self._halted = halted
        self._prepare = prepare
        self._wall_ms = wall_ms
        self._sleep = sleep
        self._rng = rng or random.Random()

    async def submit(
        self, signal: Signal, *, maybe_sent: bool = False, received_ms: float | None = None
    ) -> Outcome:
        """Place the signal's order once; ``maybe_sent`` when an earlier run may have.
        ``received_ms``: when its stream entry was appended (for the latency metric)."""
        key = self._pool.active if self._pool else None
        base = Outcome(status="", key=key.name if key else "")
        if maybe_sent and key is not None:
            found = await self._lookup(key, signal)
            if found is not None:
                return replace(base, status="accepted", order_id=found)
        prepared = await self._prepare(signal)
        if isinstance(prepared, str):
            return replace(base, status="rejected", ret_msg=f"refused locally: {prepared}")
        attempts = 0
        last: Answer | None = None
        while True:
            if self._expired(signal):
                return _with_answer(replace(base, status="expired", attempts=attempts), last)
            if attempts >= self._max_attempts:
                return _with_answer(replace(base, status="failed", attempts=attempts), last)
            halt = self._halted()
            if halt is not None or self._dry_run or key is None:
                reason = "dry run: not sent" if halt is None else f"halted: {halt}"
                return _with_answer(replace(base, status="halted", attempts=attempts,
                                            ret_msg=reason), None)  # fmt: skip
            paused = self._client.pause_s()
            if paused > 0:
                # IP ban or open breaker: the signal waits while its TTL allows.
                await self._sleep(min(paused, self._left_s(signal)))
                continue
            waiting = time.monotonic()
            await self._limiter.acquire()
            self._observer.token_wait(time.monotonic() - waiting)
            if self._expired(signal):
                return _with_answer(replace(base, status="expired", attempts=attempts), last)
            key = self._pool.active if self._pool else key
            if attempts == 0 and received_ms is not None:
                self._observer.order_sent((self._wall_ms() - received_ms) / 1000)
            answer = await self._client.create_order(key, prepared)
            if answer.reply.failure is Failure.HELD:
                continue  # nothing went out; the pause above decides how long to wait
            attempts += 1
            last = answer
            base = replace(base, key=key.name)
            verdict = classify(answer.reply)
            self._observer.order_answer(verdict.value, answer.reply.ret_code)
            if verdict is Verdict.ACCEPTED:
                order_id = str(answer.result.get("orderId", ""))
                return replace(base, status="accepted", order_id=order_id, attempts=attempts,
                               ret_code=0, ret_msg=answer.ret_msg)  # fmt: skip
            if verdict is Verdict.ALREADY_PLACED:
                found = await self._lookup(key, signal)
                return replace(base, status="accepted", order_id=found or "", attempts=attempts,
                               ret_code=answer.reply.ret_code, ret_msg=answer.ret_msg)  # fmt: skip
            if verdict is Verdict.REJECTED:
                return _with_answer(replace(base, status="rejected", attempts=attempts), answer)
            if verdict is Verdict.KEY_FAILURE:
                reason = f"{answer.reply.ret_code or answer.reply.status} {answer.ret_msg}"
                spare = self._pool.fail(key, reason.strip()) if self._pool else None
                if spare is None:
                    return _with_answer(replace(base, status="rejected", attempts=attempts),
                                        answer)  # fmt: skip
                key = spare  # same orderLinkId, other key of the same account
                continue
            if verdict is Verdict.UNKNOWN:
                found = await self._lookup(key, signal)
                if found is not None:
                    return replace(base, status="accepted", order_id=found, attempts=attempts)
                await self._sleep(backoff_s(attempts, rng=self._rng))
                continue
            if verdict is Verdict.IP_BAN:
                continue  # the client now holds every request until the ban ends
            await self._recover(answer, attempts)

    def _expired(self, signal: Signal) -> bool:
        return self._wall_ms() >= signal.deadline_ms

    def _left_s(self, signal: Signal) -> float:
        return max(0.0, (signal.deadline_ms - self._wall_ms()) / 1000)

    async def _recover(self, answer: Answer, attempts: int) -> None:
        """After a rejection-before-processing: fix what caused it, then wait."""
        code = answer.reply.ret_code
        if code == TIMESTAMP_CODE:
            server_ms = server_timestamp_ms(answer.ret_msg)
            if server_ms is not None:
                self._client.resync_from(server_ms)
            else:
                await self._client.sync_time()
            return
        if code == RATE_LIMIT_CODE:
            # Every worker shares the bucket: hold it until the exchange's window
            # resets, then run slower for a while.
            reset = answer.rate.reset_ms or int(self._wall_ms()) + RATE_LIMIT_FALLBACK_MS
            self._limiter.hold(max(0.0, (reset - self._wall_ms()) / 1000))
            self._limiter.throttle(THROTTLE_FACTOR, THROTTLE_S)
            return
        await self._sleep(backoff_s(attempts, rng=self._rng))

    async def _lookup(self, key: ApiKey, signal: Signal) -> str | None:
        """The orderId if the order exists, None if the exchange says it does not."""
        attempt = 0
        while attempt < LOOKUP_ATTEMPTS:
            paused = self._client.pause_s()
            if paused > 0:
                await self._sleep(paused)  # a lookup is not bound by the TTL
            answer = await self._client.get_order(key, signal.category.value, signal.order_link_id)
            if answer.reply.failure is Failure.HELD:
                continue
            attempt += 1
            if answer.ok:
                orders = answer.result.get("list") or []
                for order in orders:
                    if order.get("orderLinkId") == signal.order_link_id:
                        return str(order.get("orderId", ""))
                return None
            if self._pool is not None and classify(answer.reply) is Verdict.KEY_FAILURE:
                # Refused key: ask with the other key of the same account instead.
                reason = f"{answer.reply.ret_code or answer.reply.status} {answer.ret_msg}"
                spare = self._pool.fail(key, reason.strip())
                if spare is not None and spare.name != key.name:
                    key = spare
                    continue
            await self._sleep(backoff_s(attempt, rng=self._rng))
        raise Unresolved(f"order {signal.order_link_id} could not be looked up")


def _with_answer(outcome: Outcome, answer: Answer | None) -> Outcome:
    if answer is None:
        return outcome
    message = answer.ret_msg or answer.error
    return replace(outcome, ret_code=answer.reply.ret_code, ret_msg=message)
