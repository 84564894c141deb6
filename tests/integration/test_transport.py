"""The aiohttp transport under the httpx API, against the simulator: answers,
rate-limit headers, and failures sorted by whether the request may have left."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from pydantic import SecretStr

from executor.bybit.client import ApiKey, BybitClient
from executor.bybit.sim_state import PRIMARY
from executor.bybit.simulator import SimulatorServer
from executor.bybit.transport import AiohttpTransport
from executor.outcome import Failure
from executor.redis_server import free_port
from tests.unit_helpers import DOC_ORDER

KEY = ApiKey("primary", PRIMARY.api_key, SecretStr(PRIMARY.secret))


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=AiohttpTransport(timeout_s=0.5)) as client:
        yield client


async def test_an_order_is_accepted_with_its_rate_limit_headers(
    sim: SimulatorServer, http: httpx.AsyncClient
) -> None:
    answer = await BybitClient(http, sim.url).create_order(KEY, DOC_ORDER)
    assert answer.ok and answer.result["orderLinkId"] == DOC_ORDER["orderLinkId"]
    assert (answer.rate.limit, answer.rate.remaining) == (10, 9)
    again = await BybitClient(http, sim.url).create_order(KEY, DOC_ORDER)
    assert again.reply.ret_code == 110072  # the second request, on the kept-alive connection


async def test_an_answer_lost_after_the_exchange_acted_is_no_answer(
    sim: SimulatorServer, http: httpx.AsyncClient
) -> None:
    sim.state.knobs.update({"lose_rate": 1.0})
    answer = await BybitClient(http, sim.url).create_order(KEY, DOC_ORDER)
    assert answer.reply.failure is Failure.NO_ANSWER
    assert len(sim.state.book.orders) == 1  # it did land


async def test_a_slow_answer_times_out_as_no_answer(
    sim: SimulatorServer, http: httpx.AsyncClient
) -> None:
    sim.state.knobs.update({"latency_ms": 2000})
    answer = await BybitClient(http, sim.url).create_order(KEY, DOC_ORDER)
    assert answer.reply.failure is Failure.NO_ANSWER


async def test_nothing_listening_is_not_sent(http: httpx.AsyncClient) -> None:
    answer = await BybitClient(http, f"http://127.0.0.1:{free_port()}").create_order(KEY, DOC_ORDER)
    assert answer.reply.failure is Failure.NOT_SENT
