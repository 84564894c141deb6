"""Reading a create-batch answer order by order, and what a batch request carries."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from executor.bybit.answer import Answer, BatchItem, batch_items, parse_answer
from executor.bybit.client import ApiKey, BybitClient
from executor.outcome import Failure, Reply, Verdict, classify

KEY = ApiKey("primary", "ABCDEFGHIJKLMNOPQR", SecretStr("0123456789abcdefghijklmnopqrstuvwxyz"))


def order(link: str, qty: str = "0.001") -> dict[str, str]:
    return {
        "symbol": "BTCUSDT",
        "side": "Buy",
        "orderType": "Market",
        "qty": qty,
        "orderLinkId": link,
    }


def row(link: str, order_id: str) -> dict[str, str]:
    return {
        "category": "linear",
        "symbol": "BTCUSDT",
        "orderId": order_id,
        "orderLinkId": link,
        "createAt": "1700000000000" if order_id else "",
    }


def batch_answer(
    rows: list[Any] | None, codes: list[Any] | None, ret_code: int = 0, msg: str = "OK"
) -> Answer:
    result = {} if rows is None else {"list": rows}
    ext = {} if codes is None else {"list": codes}
    body = {"retCode": ret_code, "retMsg": msg, "result": result, "retExtInfo": ext, "time": 1}
    return parse_answer(200, json.dumps(body).encode(), {})


BODIES = [order("b-1"), order("b-2"), order("b-3"), order("b-4")]


def test_every_order_accepted() -> None:
    answer = batch_answer(
        [row("b-1", "101"), row("b-2", "102"), row("b-3", "103"), row("b-4", "104")],
        [{"code": 0, "msg": "OK"}] * 4,
    )
    items = batch_items(answer, BODIES)
    assert items == tuple(
        BatchItem(Reply(status=200, ret_code=0), "OK", f"10{i}", f"b-{i}") for i in range(1, 5)
    )
    assert {classify(item.reply) for item in items} == {Verdict.ACCEPTED}


def test_an_accepted_batch_with_orders_failing_one_by_one() -> None:
    answer = batch_answer(
        [row("b-1", "101"), row("b-2", ""), row("b-3", ""), row("b-4", "")],
        [
            {"code": 0, "msg": "OK"},
            {"code": 110072, "msg": "OrderLinkedID is duplicate"},
            {"code": 10006, "msg": "Too many visits!"},
            {"code": 110007, "msg": "ab not enough for new order"},
        ],
    )
    items = batch_items(answer, BODIES)
    assert [(i.code, i.order_id, i.order_link_id) for i in items] == [
        (0, "101", "b-1"),
        (110072, "", "b-2"),
        (10006, "", "b-3"),
        (110007, "", "b-4"),
    ]
    assert [classify(i.reply) for i in items] == [
        Verdict.ACCEPTED,
        Verdict.ALREADY_PLACED,
        Verdict.RETRY,
        Verdict.REJECTED,
    ]
    assert items[3].msg == "ab not enough for new order"


@pytest.mark.parametrize(
    ("rows", "codes"),
    [
        pytest.param([row("b-1", "101"), row("b-2", "102")], [{"code": 0}] * 4, id="short-result"),
        pytest.param(
            [row(f"b-{i}", f"10{i}") for i in range(1, 5)], [{"code": 0}] * 2, id="short-ext"
        ),
        pytest.param(None, None, id="both-missing"),
        pytest.param([row("b-1", "101"), "junk", None], [{"code": 0}, {"code": 0}], id="junk-rows"),
    ],
)
def test_orders_without_a_result_are_unknown_never_accepted(
    rows: list[Any] | None, codes: list[Any] | None
) -> None:
    items = batch_items(batch_answer(rows, codes), BODIES)
    assert [i.order_link_id for i in items] == ["b-1", "b-2", "b-3", "b-4"]
    assert [i.code for i in items[2:]] == [None, None]
    assert {classify(i.reply) for i in items[2:]} == {Verdict.UNKNOWN}
    assert all(i.order_id == "" for i in items[2:])


def test_a_mismatched_order_link_id_makes_that_order_unknown() -> None:
    answer = batch_answer(
        [row("b-1", "101"), row("b-3", "103"), row("b-2", "102"), row("b-4", "104")],
        [{"code": 0, "msg": "OK"}] * 4,
    )
    items = batch_items(answer, BODIES)
    assert [i.code for i in items] == [0, None, None, 0]
    assert items[1] == BatchItem(
        Reply(status=200), "the answer names orderLinkId 'b-3' at this position", "", "b-2"
    )


def test_an_empty_order_link_id_in_the_answer_is_matched_by_position() -> None:
    answer = batch_answer([row("", "")], [{"code": 10001, "msg": "params error"}])
    [item] = batch_items(answer, [order("b-1")])
    assert (item.code, item.order_link_id, classify(item.reply)) == (
        10001,
        "b-1",
        Verdict.REJECTED,
    )


@pytest.mark.parametrize(
    ("result", "ext"),
    [
        pytest.param(row("b-1", ""), {"code": 0, "msg": "OK"}, id="accepted-without-order-id"),
        pytest.param(row("b-1", "101"), {"msg": "OK"}, id="no-code"),
        pytest.param(row("b-1", "101"), {"code": "zero", "msg": "OK"}, id="garbled-code"),
    ],
)
def test_an_order_the_answer_does_not_clearly_account_for_is_unknown(
    result: dict[str, str], ext: dict[str, Any]
) -> None:
    [item] = batch_items(batch_answer([result], [ext]), [order("b-1")])
    assert item.code is None and classify(item.reply) is Verdict.UNKNOWN


def test_a_batch_refused_as_a_whole_gives_every_order_its_code() -> None:
    answer = batch_answer(None, None, ret_code=10006, msg="Too many visits!")
    items = batch_items(answer, BODIES[:2])
    assert [(i.code, i.msg, i.order_link_id) for i in items] == [
        (10006, "Too many visits!", "b-1"),
        (10006, "Too many visits!", "b-2"),
    ]


@pytest.mark.parametrize(
    ("failure", "verdict"),
    [(Failure.NOT_SENT, Verdict.RETRY), (Failure.NO_ANSWER, Verdict.UNKNOWN)],
)
def test_a_lost_batch_leaves_every_order_to_the_transport_failure(
    failure: Failure, verdict: Verdict
) -> None:
    answer = Answer(Reply(failure=failure), error="ReadTimeout: timed out")
    items = batch_items(answer, BODIES[:2])
    assert [(i.code, i.msg, classify(i.reply)) for i in items] == [
        (None, "ReadTimeout: timed out", verdict)
    ] * 2


# --- the request --------------------------------------------------------------------------


async def test_create_batch_states_the_category_once_and_keeps_each_order_as_given() -> None:
    seen: list[httpx.Request] = []

    def exchange(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        body = {
            "retCode": 0,
            "retMsg": "OK",
            "result": {"list": [row("b-1", "101"), row("b-2", "")]},
            "retExtInfo": {"list": [{"code": 0, "msg": "OK"}, {"code": 110007, "msg": "no"}]},
        }
        return httpx.Response(200, json=body)

    bodies = [{"category": "linear", **order("b-1")}, order("b-2")]
    async with httpx.AsyncClient(transport=httpx.MockTransport(exchange)) as http:
        batch = await BybitClient(http, "https://sim.test").create_batch(KEY, "linear", bodies)

    [request] = seen
    assert request.url == "https://sim.test/v5/order/create-batch"
    assert json.loads(request.content) == {
        "category": "linear",
        "request": [order("b-1"), order("b-2")],
    }
    assert bodies[0]["category"] == "linear"  # the caller's dict is left alone
    assert batch.answer.ok
    assert [(i.code, i.order_id) for i in batch.items] == [(0, "101"), (110007, "")]


async def test_create_batch_refuses_an_order_of_another_category() -> None:
    def exchange(request: httpx.Request) -> httpx.Response:
        raise AssertionError("nothing may be sent")

    async with httpx.AsyncClient(transport=httpx.MockTransport(exchange)) as http:
        client = BybitClient(http, "https://sim.test")
        with pytest.raises(ValueError, match="'spot' in a 'linear' batch"):
            await client.create_batch(KEY, "linear", [{"category": "spot", **order("b-1")}])
