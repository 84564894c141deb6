"""Submitter decisions against a scripted exchange (httpx.MockTransport), no network."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Iterator

import httpx
import pytest
from pydantic import SecretStr

from executor.bybit.client import ApiKey, BybitClient
from executor.keys import KeyPool
from executor.limiter import THROTTLE_FACTOR, TokenBucket, Venue
from executor.signals import parse_signal
from executor.submitter import Submitter, backoff_s
from tests.unit_helpers import encode

KEY = ApiKey("primary", "KEY", SecretStr("secret"))
NOW_MS = 1_700_000_000_000.0


def envelope(code: int, msg: str = "", result: dict[str, object] | None = None) -> bytes:
    return json.dumps({"retCode": code, "retMsg": msg, "result": result or {}}).encode()


class Script:
    """Answers order-create requests from a list; records what was sent."""

    def __init__(self, answers: list[httpx.Response]) -> None:
        self._answers: Iterator[httpx.Response] = iter(answers)
        self.bodies: list[bytes] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.bodies.append(request.content)
        return next(self._answers)


async def settle() -> None:
    """Let the submitter run until it blocks (on the held bucket)."""
    for _ in range(50):
        await asyncio.sleep(0)


def signal_bytes() -> bytes:
    return encode({"id": "u-1", "symbol": "BTCUSDT", "side": "Buy", "order_type": "Market",
                   "qty": "0.001", "ts": int(NOW_MS), "ttl_ms": 60_000})  # fmt: skip


def submitter(script: Script, bucket: TokenBucket, sleeps: list[float]) -> Submitter:
    http = httpx.AsyncClient(transport=httpx.MockTransport(script))
    client = BybitClient(http, "http://bybit.test", wall_ms=lambda: NOW_MS)

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    return Submitter(client, [KEY], bucket, wall_ms=lambda: NOW_MS, sleep=sleep,
                     rng=random.Random(1))  # fmt: skip


async def test_http_429_backs_off_then_resends_the_same_body() -> None:
    script = Script([
        httpx.Response(429, content=b"Too Many Requests"),
        httpx.Response(200, content=envelope(0, "OK", {"orderId": "o-1"})),
    ])  # fmt: skip
    sleeps: list[float] = []
    bucket = TokenBucket(100, 10, clock=asyncio.get_running_loop().time)
    outcome = await submitter(script, bucket, sleeps).submit(parse_signal(signal_bytes()))
    assert (outcome.status, outcome.order_id, outcome.attempts) == ("accepted", "o-1", 2)
    assert len(sleeps) == 1 and 0 <= sleeps[0] <= 0.05
    assert script.bodies[0] == script.bodies[1]


async def test_10006_without_reset_header_holds_every_sender_for_two_seconds() -> None:
    clock = [0.0]
    bucket = TokenBucket(10, 1, clock=lambda: clock[0])
    script = Script([
        httpx.Response(200, content=envelope(10006, "Too many visits!")),
    ])  # fmt: skip
    sub = submitter(script, bucket, [])
    task = asyncio.ensure_future(sub.submit(parse_signal(signal_bytes())))
    await settle()
    assert len(script.bodies) == 1
    assert bucket.delay() == 2.0  # now + 2 s, the documented fallback
    assert bucket.rate == 10 * THROTTLE_FACTOR
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_10006_with_reset_header_holds_until_that_moment() -> None:
    clock = [0.0]
    bucket = TokenBucket(10, 1, clock=lambda: clock[0])
    reset = {"X-Bapi-Limit": "10", "X-Bapi-Limit-Status": "0",
             "X-Bapi-Limit-Reset-Timestamp": str(int(NOW_MS) + 350)}  # fmt: skip
    script = Script([httpx.Response(200, content=envelope(10006), headers=reset)])
    task = asyncio.ensure_future(submitter(script, bucket, []).submit(parse_signal(signal_bytes())))
    await settle()
    assert len(script.bodies) == 1
    assert bucket.delay() == pytest.approx(0.35)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def test_backoff_grows_exponentially_with_full_jitter_up_to_the_cap() -> None:
    rng = random.Random(7)
    for attempt, ceiling in [(1, 0.05), (2, 0.1), (3, 0.2), (6, 1.6), (7, 2.0), (30, 2.0)]:
        draws = [backoff_s(attempt, rng=rng) for _ in range(200)]
        assert all(0 <= d <= ceiling for d in draws)
        assert max(draws) > ceiling * 0.8  # jitter spans the range, not a fixed delay


async def test_lookup_refused_on_the_primary_key_asks_again_on_the_secondary() -> None:
    secondary = ApiKey("secondary", "KEY2", SecretStr("secret2"))
    found = {"list": [{"orderLinkId": "u-1", "orderId": "o-9"}]}
    seen: list[tuple[str, str]] = []

    def exchange(request: httpx.Request) -> httpx.Response:
        seen.append((request.url.path, request.headers["X-BAPI-API-KEY"]))
        if request.url.path == "/v5/order/create":
            raise httpx.ReadTimeout("lost", request=request)  # sent; answer never came
        if request.headers["X-BAPI-API-KEY"] == "KEY":
            return httpx.Response(200, content=envelope(10003, "API key is invalid."))
        return httpx.Response(200, content=envelope(0, "OK", found))

    pool = KeyPool([KEY, secondary])
    pool.same_account = True
    client = BybitClient(httpx.AsyncClient(transport=httpx.MockTransport(exchange)),
                         "http://bybit.test", wall_ms=lambda: NOW_MS)  # fmt: skip

    async def no_sleep(_seconds: float) -> None:
        return None

    sub = Submitter(client, pool, TokenBucket(100, 10, clock=asyncio.get_running_loop().time),
                    wall_ms=lambda: NOW_MS, sleep=no_sleep, rng=random.Random(1))  # fmt: skip
    outcome = await sub.submit(parse_signal(signal_bytes()))
    assert (outcome.status, outcome.order_id) == ("accepted", "o-9")
    assert seen == [
        ("/v5/order/create", "KEY"),
        ("/v5/order/realtime", "KEY"),
        ("/v5/order/realtime", "KEY2"),
    ]
    assert pool.active.name == "secondary" and list(pool.failed()) == ["primary"]


async def test_an_answer_showing_a_lower_limit_slows_the_budget_to_it() -> None:
    clock = [0.0]
    bucket = TokenBucket(10, 1, clock=lambda: clock[0])
    lower = {"X-Bapi-Limit": "5", "X-Bapi-Limit-Status": "3",
             "X-Bapi-Limit-Reset-Timestamp": str(int(NOW_MS))}  # fmt: skip
    ok = httpx.Response(200, content=envelope(0, "OK", {"orderId": "o-1"}), headers=lower)
    outcome = await submitter(Script([ok]), bucket, []).submit(parse_signal(signal_bytes()))
    assert outcome.status == "accepted"
    assert bucket.rate == 5.0


async def test_an_accepted_order_that_spends_the_window_holds_until_its_reset() -> None:
    clock = [0.0]
    bucket = TokenBucket(10, 1, clock=lambda: clock[0])
    spent = {"X-Bapi-Limit": "10", "X-Bapi-Limit-Status": "0",
             "X-Bapi-Limit-Reset-Timestamp": str(int(NOW_MS) + 250)}  # fmt: skip
    ok = httpx.Response(200, content=envelope(0, "OK", {"orderId": "o-1"}), headers=spent)
    outcome = await submitter(Script([ok]), bucket, []).submit(parse_signal(signal_bytes()))
    assert outcome.status == "accepted"
    assert bucket.delay() == pytest.approx(0.25)  # not the 0.1 s of the next token


class NoGrant:
    """A budget that cannot grant before the deadline (Redis away, or the window full)."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, float]] = []

    async def acquire(self, category: str, within_s: float) -> bool:
        self.asked.append((category, within_s))
        return False

    async def heard(self, category: str, venue: Venue, *, refused: bool = False) -> None:
        raise AssertionError("nothing was sent, so nothing was heard")


async def test_no_grant_before_the_deadline_ends_expired_with_nothing_sent() -> None:
    script = Script([])
    budget = NoGrant()
    http = httpx.AsyncClient(transport=httpx.MockTransport(script))
    client = BybitClient(http, "http://bybit.test", wall_ms=lambda: NOW_MS)
    sub = Submitter(client, [KEY], budget, wall_ms=lambda: NOW_MS)
    outcome = await sub.submit(parse_signal(signal_bytes()))
    assert (outcome.status, outcome.attempts) == ("expired", 0)
    assert script.bodies == []
    assert budget.asked == [("linear", 60.0)]  # the signal's TTL left
