"""One signal through the checks, the limiter, the keys, the client and its retries.

Every exchange answer goes through ``classify``; what happens next is read
from the verdict alone. A resend always carries the same orderLinkId, and an
answer whose outcome is unknown is reconciled by looking the order up before
anything is sent again. Local gates (kill switch, risk, instrument rules) run
before a rate-limit token is spent; the IP ban and the circuit breaker hold
requests back without counting them as attempts. Every order answer's rate-limit
headers go back to the budget, which follows the exchange's limit down and
holds when the exchange says the window is spent.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

import structlog

from executor.bybit.answer import BatchAnswer, BatchItem
from executor.bybit.client import Answer, ApiKey, BybitClient
from executor.keys import KeyPool
from executor.limiter import LocalBudget, TokenBucket, Venue, batch_lane
from executor.observe import NO_OBSERVER, Observer
from executor.outcome import (
    RATE_LIMIT_CODE,
    TIMESTAMP_CODE,
    Failure,
    Verdict,
    classify,
    server_timestamp_ms,
)
from executor.riding import Rider
from executor.signals import Signal

LOOKUP_ATTEMPTS = 5
LINEAR_BATCH = 20  # orders in one create-batch: linear, inverse, option
SPOT_BATCH = 10
BATCH_WAIT_S = 1.0  # the batch budget's window: orders not granted by then go one by one

log = structlog.get_logger("executor")

# The order body to send, or the reason it must not be sent (risk, instrument rules).
Prepare = Callable[[Signal], Awaitable[dict[str, Any] | str]]


async def plain_body(signal: Signal) -> dict[str, Any] | str:
    return signal.order_body()


class Budget(Protocol):
    """The account's order-create budget (``LocalBudget``, or ``budget.SharedBudget``)."""

    async def acquire(self, category: str, within_s: float, units: int = 1) -> int:
        """Wait for a grant of up to ``units``; how many (0 when none can come
        within ``within_s``)."""
        ...

    async def heard(self, category: str, venue: Venue, *, refused: bool = False) -> None:
        """An order answer's rate-limit headers; ``refused``: it was a 10006."""
        ...

    def ahead(self, category: str, units: int) -> Rider | None:
        """A take for grants that ``acquire`` calls about to come will use, to send
        along another script call; None when there is nothing to gain."""
        ...


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
        limiter: Budget | TokenBucket,
        *,
        max_attempts: int = 5,
        dry_run: bool = False,
        halted: Callable[[], str | None] = lambda: None,
        prepare: Prepare = plain_body,
        wall_ms: Callable[[], float] = lambda: time.time() * 1000,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        rng: random.Random | None = None,
        observer: Observer = NO_OBSERVER,
        batches: Budget | None = None,
        batch_size: int = 20,
    ) -> None:
        self._observer = observer
        # Batches draw on their own budget (``limiter.batch_lane``); None: never batch.
        self._batches = batches
        self._batch_size = batch_size
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
        self._budget = LocalBudget.of(limiter) if isinstance(limiter, TokenBucket) else limiter
        self._max_attempts = max_attempts
        self._dry_run = dry_run
        self._halted = halted
        self._prepare = prepare
        self._wall_ms = wall_ms
        self._sleep = sleep
        self._rng = rng or random.Random()

    async def submit(
        self,
        signal: Signal,
        *,
        maybe_sent: bool = False,
        received_ms: float | None = None,
        body: dict[str, Any] | None = None,
    ) -> Outcome:
        """Place the signal's order once; ``maybe_sent`` when an earlier run may have.
        ``received_ms``: when its stream entry was appended (for the latency metric).
        ``body``: the order as already prepared (checked once, counted once by the risk gate)."""
        key = self._pool.active if self._pool else None
        base = Outcome(status="", key=key.name if key else "")
        if maybe_sent and key is not None:
            found = await self._lookup(key, signal)
            if found is not None:
                return replace(base, status="accepted", order_id=found)
        prepared = body if body is not None else await self._prepare(signal)
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
            granted = await self._budget.acquire(signal.category.value, self._left_s(signal))
            self._observer.token_wait(time.monotonic() - waiting)
            if not granted or self._expired(signal):
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
            refused = answer.reply.ret_code == RATE_LIMIT_CODE
            await self._budget.heard(signal.category.value, self._venue(answer), refused=refused)
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
                spare = self._pool.fail(key, _refusal(answer)) if self._pool else None
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

    def ahead(self, category: str, count: int) -> Rider | None:
        """``count`` orders of ``category`` are on their way, each to be sent alone:
        their single-order grants, asked for in the same round trip as their claims
        (``Dedup.claim_many``). None when nothing would be sent now."""
        if self._dry_run or self._pool is None or self._halted() is not None:
            return None
        if self._client.pause_s() > 0:
            return None
        return self._budget.ahead(category, count)

    def batch_size(self, category: str) -> int:
        """How many orders of ``category`` may go in one create-batch (1: batching off)."""
        if self._batches is None or self._pool is None or self._dry_run:
            return 1
        return min(self._batch_size, SPOT_BATCH if category == "spot" else LINEAR_BATCH)

    async def submit_batch(
        self, signals: Sequence[Signal], received_ms: Sequence[float | None]
    ) -> list[Outcome | Unresolved]:
        """Place several new orders of one category, as many as the batch budget
        grants now in one create-batch; every order the answer does not settle,
        and every one not granted, goes through ``submit`` on its own.

        A batch request is the first attempt of each order in it: one that may
        have landed (no answer, an unknown item) is looked up before any resend,
        with the same orderLinkId.
        """
        settled: dict[int, Outcome | Unresolved] = {}
        alone: dict[int, bool] = {}  # index -> may have been sent by the batch
        tried: set[int] = set()
        key = self._pool.active if self._pool else None
        bodies: list[tuple[int, dict[str, Any]]] = []
        for index, signal in enumerate(signals):
            prepared = await self._prepare(signal)
            if isinstance(prepared, str):
                settled[index] = Outcome(status="rejected", key=key.name if key else "",
                                         ret_msg=f"refused locally: {prepared}")  # fmt: skip
            else:
                bodies.append((index, prepared))
        category = signals[0].category.value
        pending = bodies if len(bodies) > 1 else []
        while pending and key is not None and self._batches is not None:
            if self._halted() is not None or self._client.pause_s() > 0:
                break
            key = self._pool.active if self._pool else key  # a failover since the last batch
            # Grants come as the batch budget's window frees: send what each
            # brings; orders still waiting after BATCH_WAIT_S go one by one.
            within = min(BATCH_WAIT_S, self._left_s(signals[pending[0][0]]))
            waiting = time.monotonic()
            granted = await self._batches.acquire(batch_lane(category), within, len(pending))
            if not granted:
                break
            sent, pending = pending[:granted], pending[granted:]
            waited = time.monotonic() - waiting
            for index, _ in sent:
                self._observer.token_wait(waited)
                arrived = received_ms[index]
                if arrived is not None:
                    self._observer.order_sent((self._wall_ms() - arrived) / 1000)
            batch = await self._client.create_batch(key, category, [body for _, body in sent])
            await self._hear_batch(category, key, batch)
            whole = batch.answer
            if whole.reply.failure is not Failure.HELD:
                tried.update(index for index, _ in sent)
            if not whole.ok:
                # The batch as a whole was refused or lost: each order goes on
                # alone, looked up first when the request may have landed.
                maybe = classify(whole.reply) is Verdict.UNKNOWN
                alone.update((index, maybe) for index, _ in sent)
                break
            for (index, _), item in zip(sent, batch.items, strict=True):
                outcome = await self._settle_item(key, signals[index], item)
                if outcome is not None:
                    settled[index] = outcome
                else:
                    alone[index] = item.code is None or classify(item.reply) is Verdict.UNKNOWN
        for index, _ in bodies:
            if index not in settled and index not in alone:
                alone[index] = False  # never sent

        body_of = dict(bodies)

        async def one(index: int) -> Outcome | Unresolved:
            try:
                outcome = await self.submit(
                    signals[index],
                    maybe_sent=alone[index],
                    received_ms=received_ms[index],
                    body=body_of[index],
                )
            except Unresolved as exc:
                return exc
            return replace(outcome, attempts=outcome.attempts + 1) if index in tried else outcome

        retried = await asyncio.gather(*(one(index) for index in sorted(alone)))
        settled.update(zip(sorted(alone), retried, strict=True))
        return [settled[index] for index in range(len(signals))]

    async def _hear_batch(self, category: str, key: ApiKey, batch: BatchAnswer) -> None:
        answer = batch.answer
        if answer.reply.failure is Failure.HELD:
            return
        refused = answer.reply.ret_code == RATE_LIMIT_CODE or any(
            item.code == RATE_LIMIT_CODE for item in batch.items
        )
        assert self._batches is not None
        await self._batches.heard(batch_lane(category), self._venue(answer), refused=refused)
        verdict = classify(answer.reply)
        if not answer.ok:
            self._observer.order_answer(verdict.value, answer.reply.ret_code)
        if verdict is Verdict.KEY_FAILURE and self._pool is not None:
            self._pool.fail(key, _refusal(answer))
        elif verdict is Verdict.REJECTED and answer.reply.failure is None:
            # The exchange refuses batches as such (an account without batch
            # trading, a changed API): nothing in it was placed; go one by one.
            self._batches = None
            log.warning("batch.unavailable", ret_code=answer.reply.ret_code,
                        ret_msg=answer.ret_msg[:200])  # fmt: skip

    async def _settle_item(self, key: ApiKey, signal: Signal, item: BatchItem) -> Outcome | None:
        """A batch item's final outcome, or None when the order must go on alone."""
        if item.code is None:
            return None  # the answer does not say: looked up before any resend
        verdict = classify(item.reply)
        self._observer.order_answer(verdict.value, item.code)
        base = Outcome(status="accepted", key=key.name, attempts=1, ret_code=item.code,
                       ret_msg=item.msg)  # fmt: skip
        if verdict is Verdict.ACCEPTED:
            return replace(base, order_id=item.order_id, ret_code=0)
        if verdict is Verdict.ALREADY_PLACED:
            try:
                found = await self._lookup(key, signal)
            except Unresolved:
                return None
            return replace(base, order_id=found or "")
        if verdict is Verdict.REJECTED:
            return replace(base, status="rejected")
        return None

    def _expired(self, signal: Signal) -> bool:
        return self._wall_ms() >= signal.deadline_ms

    def _left_s(self, signal: Signal) -> float:
        return max(0.0, (signal.deadline_ms - self._wall_ms()) / 1000)

    def _venue(self, answer: Answer) -> Venue:
        """The answer's rate-limit headers, its reset read on the exchange's clock.

        The measured clock offset is used only when it lengthens the wait: taken
        from one round trip, it can be tens of milliseconds off, and a hold that
        ends early earns the 10006 it was meant to avoid.
        """
        rate = answer.rate
        reset_in_s = None
        if rate.reset_ms is not None:
            server_now_ms = self._wall_ms() + min(0.0, self._client.offset_ms)
            reset_in_s = (rate.reset_ms - server_now_ms) / 1000
        return Venue(rate.limit, rate.remaining, reset_in_s)

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
            return  # the budget holds every sender until the reset, then runs slower
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
                spare = self._pool.fail(key, _refusal(answer))
                if spare is not None and spare.name != key.name:
                    key = spare
                    continue
            await self._sleep(backoff_s(attempt, rng=self._rng))
        raise Unresolved(f"order {signal.order_link_id} could not be looked up")


def _refusal(answer: Answer) -> str:
    """Why a key was refused, for the key pool's log and metrics."""
    return f"{answer.reply.ret_code or answer.reply.status} {answer.ret_msg}".strip()


def _with_answer(outcome: Outcome, answer: Answer | None) -> Outcome:
    if answer is None:
        return outcome
    message = answer.ret_msg or answer.error
    return replace(outcome, ret_code=answer.reply.ret_code, ret_msg=message)
