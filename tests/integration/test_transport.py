"""The aiohttp sender under BybitClient, against the simulator: answers,
rate-limit headers, and failures sorted by whether the request may have left."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from pydantic import SecretStr

from executor.bybit.client import ApiKey, BybitClient
from executor.bybit.sim_state import PRIMARY
from executor.bybit.simulator import SimulatorServer
from executor.bybit.transport import AiohttpSender
from executor.outcome import Failure
from executor.redis_server import free_port
from tests.unit_helpers import DOC_ORDER

KEY = ApiKey("primary", PRIMARY.api_key, SecretStr(PRIMARY.secret))


@pytest.fixture
async def sender() -> AsyncIterator[AiohttpSender]:
    sender = AiohttpSender(timeout_s=0.5, headers={"User-Agent": "executor"})
    yield sender
    await sender.aclose()


async def test_an_order_is_accepted_with_its_rate_limit_headers(
    sim: SimulatorServer, sender: AiohttpSender
) -> None:
    answer = await BybitClient(sender, sim.url).create_order(KEY, DOC_ORDER)
    assert answer.ok and answer.result["orderLinkId"] == DOC_ORDER["orderLinkId"]
    assert (answer.rate.limit, answer.rate.remaining) == (10, 9)
    again = await BybitClient(sender, sim.url).create_order(KEY, DOC_ORDER)
    assert again.reply.ret_code == 110072  # the second request, on the kept-alive connection
    assert [o.order_link_id for o in sim.state.book.orders] == [DOC_ORDER["orderLinkId"]]


async def test_a_query_needing_escapes_goes_out_as_signed(
    sim: SimulatorServer, sender: AiohttpSender
) -> None:
    client = BybitClient(sender, sim.url)
    await client.create_order(KEY, DOC_ORDER)
    # Re-quoting the query on the way out would break the signature (10004).
    answer = await client.get_order(KEY, "linear", "sig test/001&x=1")
    assert answer.ok and answer.result["list"] == []


async def test_an_answer_lost_after_the_exchange_acted_is_no_answer(
    sim: SimulatorServer, sender: AiohttpSender
) -> None:
    sim.state.knobs.update({"lose_rate": 1.0})
    answer = await BybitClient(sender, sim.url).create_order(KEY, DOC_ORDER)
    assert answer.reply.failure is Failure.NO_ANSWER
    assert answer.error.startswith("ServerDisconnectedError")
    assert len(sim.state.book.orders) == 1  # it did land


async def test_a_slow_answer_times_out_as_no_answer(
    sim: SimulatorServer, sender: AiohttpSender
) -> None:
    sim.state.knobs.update({"latency_ms": 2000})
    answer = await BybitClient(sender, sim.url).create_order(KEY, DOC_ORDER)
    assert answer.reply.failure is Failure.NO_ANSWER


async def test_nothing_listening_is_not_sent(sender: AiohttpSender) -> None:
    client = BybitClient(sender, f"http://127.0.0.1:{free_port()}")
    answer = await client.create_order(KEY, DOC_ORDER)
    assert answer.reply.failure is Failure.NOT_SENT
    assert answer.error.startswith("ClientConnectorError")
