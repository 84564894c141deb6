"""create-batch against the simulator: each order's fate read from one answer."""

from __future__ import annotations

from pydantic import SecretStr

from executor.bybit.client import ApiKey, BybitClient
from executor.bybit.sim_state import PRIMARY
from executor.bybit.simulator import SimulatorServer
from executor.outcome import Verdict, classify
from tests.unit_helpers import DOC_ORDER

KEY = ApiKey("primary", PRIMARY.api_key, SecretStr(PRIMARY.secret))


def orders(*links: str) -> list[dict[str, str]]:
    """The documented order once per link id, as a batch item (the category is the batch's)."""
    item = {name: value for name, value in DOC_ORDER.items() if name != "category"}
    return [{**item, "orderLinkId": link} for link in links]


def placed(sim: SimulatorServer) -> list[str]:
    return [o.order_link_id for o in sim.state.book.orders]


async def test_a_batch_of_three_is_placed(sim: SimulatorServer, bybit: BybitClient) -> None:
    batch = await bybit.create_batch(KEY, "linear", orders("b-1", "b-2", "b-3"))
    assert batch.answer.ok
    assert [(i.code, i.order_link_id) for i in batch.items] == [
        (0, "b-1"),
        (0, "b-2"),
        (0, "b-3"),
    ]
    assert placed(sim) == ["b-1", "b-2", "b-3"]
    by_link = {o.order_link_id: o.order_id for o in sim.state.book.orders}
    assert [i.order_id for i in batch.items] == [by_link["b-1"], by_link["b-2"], by_link["b-3"]]
    assert (batch.answer.rate.limit, batch.answer.rate.remaining) == (10, 7)  # a unit per order


async def test_orders_beyond_the_budget_fail_one_by_one_inside_an_accepted_batch(
    sim: SimulatorServer, bybit: BybitClient
) -> None:
    sim.state.knobs.update({"order_limit": 2})
    batch = await bybit.create_batch(KEY, "linear", orders("b-1", "b-2", "b-3", "b-4"))
    assert batch.answer.ok
    assert [i.code for i in batch.items] == [0, 0, 10006, 10006]
    assert [classify(i.reply) for i in batch.items[2:]] == [Verdict.RETRY, Verdict.RETRY]
    assert [i.order_link_id for i in batch.items[2:]] == ["b-3", "b-4"]
    assert placed(sim) == ["b-1", "b-2"]


async def test_a_repeated_batch_is_already_placed_order_by_order(
    sim: SimulatorServer, bybit: BybitClient
) -> None:
    first = await bybit.create_batch(KEY, "linear", orders("b-1", "b-2", "b-3"))
    again = await bybit.create_batch(KEY, "linear", orders("b-1", "b-2", "b-3"))
    assert [i.code for i in first.items] == [0, 0, 0]
    assert again.answer.ok
    assert [i.code for i in again.items] == [110072, 110072, 110072]
    assert {classify(i.reply) for i in again.items} == {Verdict.ALREADY_PLACED}
    assert placed(sim) == ["b-1", "b-2", "b-3"]


async def test_a_batch_draws_on_its_own_budget_not_the_single_orders(
    sim: SimulatorServer, bybit: BybitClient
) -> None:
    for link in ("s-1", "s-2"):
        assert (await bybit.create_order(KEY, {"category": "linear", **orders(link)[0]})).ok
    sim.state.knobs.update({"order_limit": 2})
    spent = await bybit.create_order(KEY, {"category": "linear", **orders("s-3")[0]})
    assert spent.reply.ret_code == 10006
    batch = await bybit.create_batch(KEY, "linear", orders("b-1", "b-2"))
    assert [i.code for i in batch.items] == [0, 0]
