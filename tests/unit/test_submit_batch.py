"""Orders sent in one create-batch, against a scripted exchange: each order's
item decides its fate, and whatever the batch does not settle goes on alone,
looked up first when the batch may have placed it."""

from __future__ import annotations

import asyncio
import json
import random
from typing import Any

import httpx
from pydantic import SecretStr

from executor.bybit.client import ApiKey, BybitClient
from executor.limiter import LocalBudget, TokenBucket
from executor.signals import Signal, parse_signal
from executor.submitter import Outcome, Submitter
from tests.unit_helpers import encode

KEY = ApiKey("primary", "KEY", SecretStr("secret"))
NOW_MS = 1_700_000_000_000.0
BATCH = "/v5/order/create-batch"
CREATE = "/v5/order/create"


def order(n: int) -> Signal:
    return parse_signal(encode({"id": f"b-{n}", "symbol": "BTCUSDT", "side": "Buy",
                                "order_type": "Market", "qty": "0.001", "ts": int(NOW_MS),
                                "ttl_ms": 60_000}))  # fmt: skip


def envelope(code: int, result: dict[str, Any] | None = None, ext: dict[str, Any] | None = None,
             msg: str = "OK") -> httpx.Response:  # fmt: skip
    body = {"retCode": code, "retMsg": msg, "result": result or {}, "retExtInfo": ext or {}}
    return httpx.Response(200, content=json.dumps(body).encode())


class Exchange:
    """Answers batches with the given per-order codes (or a whole response),
    single creates with success, lookups from what it placed; records the calls."""

    def __init__(self, codes: list[int] | None = None, whole: httpx.Response | None = None,
                 placed: set[str] | None = None) -> None:  # fmt: skip
        self.codes = codes
        self.whole = whole
        self.placed = placed or set()
        self.calls: list[tuple[str, Any]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == BATCH:
            links = [o["orderLinkId"] for o in json.loads(request.content)["request"]]
            self.calls.append((path, links))
            if self.whole is not None:
                return self.whole
            codes = self.codes or [0] * len(links)
            rows = [{"orderId": f"id-{link}" if code == 0 else "", "orderLinkId": link}
                    for link, code in zip(links, codes, strict=False)]  # fmt: skip
            items = [{"code": code, "msg": f"m{code}"} for code in codes]
            return envelope(0, {"list": rows}, {"list": items})
        if path == CREATE:
            link = json.loads(request.content)["orderLinkId"]
            self.calls.append((path, link))
            return envelope(0, {"orderId": f"alone-{link}", "orderLinkId": link})
        link = request.url.params["orderLinkId"]
        self.calls.append((path, link))
        found = [{"orderId": f"found-{link}", "orderLinkId": link}] if link in self.placed else []
        return envelope(0, {"list": found})


def submitter(
    exchange: Exchange, batch_rate: float = 10, batch_margin_s: float = 0.01
) -> Submitter:
    http = httpx.AsyncClient(transport=httpx.MockTransport(exchange))
    client = BybitClient(http, "http://bybit.test", wall_ms=lambda: NOW_MS)
    clock = asyncio.get_running_loop().time
    return Submitter(
        client,
        [KEY],
        TokenBucket(100, 100, clock=clock),
        wall_ms=lambda: NOW_MS,
        rng=random.Random(1),
        batches=LocalBudget.batches(batch_rate, clock=clock, margin_s=batch_margin_s),
    )


def summary(outcomes: list[Any]) -> list[tuple[str, str, int]]:
    assert all(isinstance(o, Outcome) for o in outcomes)
    return [(o.status, o.order_id, o.attempts) for o in outcomes]


async def test_accepted_orders_of_one_batch_are_settled_by_one_request() -> None:
    exchange = Exchange()
    signals = [order(n) for n in range(3)]
    outcomes = await submitter(exchange).submit_batch(signals, [None] * 3)
    links = [s.order_link_id for s in signals]
    assert summary(outcomes) == [("accepted", f"id-{link}", 1) for link in links]
    assert exchange.calls == [(BATCH, links)]


async def test_each_item_decides_its_order_and_the_unsettled_go_on_alone() -> None:
    signals = [order(n) for n in range(4)]
    links = [s.order_link_id for s in signals]
    # accepted, already placed (an earlier run), venue said no, over the budget
    exchange = Exchange(codes=[0, 110072, 110007, 10006], placed={links[1]})
    outcomes = await submitter(exchange).submit_batch(signals, [None] * 4)
    assert summary(outcomes) == [
        ("accepted", f"id-{links[0]}", 1),
        ("accepted", f"found-{links[1]}", 1),
        ("rejected", "", 1),
        ("accepted", f"alone-{links[3]}", 2),  # the batch was its first attempt
    ]
    assert outcomes[2].ret_code == 110007  # type: ignore[union-attr]
    assert (CREATE, links[2]) not in exchange.calls  # a rejection is final
    assert exchange.calls[-1] == (CREATE, links[3])


async def test_a_lost_batch_answer_means_each_order_is_looked_up_before_any_resend() -> None:
    signals = [order(n) for n in range(3)]
    links = [s.order_link_id for s in signals]
    exchange = Exchange(whole=httpx.Response(503, content=b"<html>busy</html>"),
                        placed={links[0]})  # fmt: skip
    outcomes = await submitter(exchange).submit_batch(signals, [None] * 3)
    assert summary(outcomes)[0] == ("accepted", f"found-{links[0]}", 1)
    assert [o.status for o in outcomes] == ["accepted"] * 3  # type: ignore[union-attr]
    for link in links[1:]:
        lookup = exchange.calls.index(("/v5/order/realtime", link))
        assert lookup < exchange.calls.index((CREATE, link))
    assert (CREATE, links[0]) not in exchange.calls  # found: never sent twice


async def test_batches_refused_as_such_turn_batching_off_and_nothing_is_lost() -> None:
    exchange = Exchange(whole=envelope(10001, msg="batch not supported"))
    sub = submitter(exchange)
    signals = [order(n) for n in range(3)]
    outcomes = await sub.submit_batch(signals, [None] * 3)
    assert [o.status for o in outcomes] == ["accepted"] * 3  # type: ignore[union-attr]
    # Refused before processing: sent alone without lookups.
    assert not any(path.startswith("/v5/order/realtime") for path, _ in exchange.calls)
    assert sub.batch_size("linear") == 1


async def test_orders_beyond_the_batch_budget_go_alone() -> None:
    exchange = Exchange()
    signals = [order(n) for n in range(5)]
    links = [s.order_link_id for s in signals]
    # The window frees 1.5 s after the first three: well after a batch stops waiting
    # for grants (1 s), however slowly the machine gets to the second batch.
    sub = submitter(exchange, batch_rate=3, batch_margin_s=0.5)
    outcomes = await sub.submit_batch(signals, [None] * 5)
    assert [o.status for o in outcomes] == ["accepted"] * 5  # type: ignore[union-attr]
    assert exchange.calls == [(BATCH, links[:3]), (CREATE, links[3]), (CREATE, links[4])]
