"""Instrument rules and risk limits before sending, against the simulator."""

from __future__ import annotations

import asyncio

import httpx
from pydantic import SecretStr

from executor.app import pre_send
from executor.bybit.client import ApiKey, BybitClient
from executor.bybit.sim_state import PRIMARY
from executor.bybit.simulator import SimulatorServer
from executor.instruments import MarketData
from executor.limiter import TokenBucket
from executor.settings import load_settings
from executor.signals import parse_signal
from executor.submitter import Submitter
from tests.integration.helpers import signal
from tests.unit_helpers import encode


async def submitter(sim: SimulatorServer, http: httpx.AsyncClient, **risk: str) -> Submitter:
    settings = load_settings(bybit_base_url=sim.url, **risk)
    client = BybitClient(http, sim.url)
    key = ApiKey("primary", PRIMARY.api_key, SecretStr(PRIMARY.secret))
    limiter = TokenBucket(1000, 100, clock=asyncio.get_running_loop().time)
    return Submitter(client, [key], limiter, prepare=pre_send(settings, MarketData(client)))


async def test_qty_is_rounded_down_to_the_step_before_sending(sim: SimulatorServer) -> None:
    async with httpx.AsyncClient() as http:
        sub = await submitter(sim, http)
        outcome = await sub.submit(parse_signal(encode(signal("round", qty="0.0019"))))
    assert outcome.status == "accepted"
    assert [o["qty"] for o in sim.state.orders_as_dicts()] == ["0.001"]


async def test_local_refusals_send_nothing_and_say_why(sim: SimulatorServer) -> None:
    async with httpx.AsyncClient() as http:
        sub = await submitter(sim, http, risk_symbols="ETHUSDT", risk_max_qty="ETHUSDT=1")
        other = await sub.submit(parse_signal(encode(signal("sym"))))
        big = await sub.submit(parse_signal(encode(signal("big", symbol="ETHUSDT", qty="2"))))
        tiny = await sub.submit(parse_signal(encode(signal("tiny", symbol="ETHUSDT", qty="0.001"))))
    assert (other.status, other.ret_msg) == (
        "rejected",
        "refused locally: symbol BTCUSDT not allowed",
    )
    assert big.ret_msg == "refused locally: qty 2 above max 1 for ETHUSDT"
    assert tiny.status == "rejected" and "below minimum" in tiny.ret_msg
    assert sim.state.stats.snapshot()["requests"].get("/v5/order/create", 0) == 0
