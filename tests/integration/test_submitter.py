"""The submitter against the in-process simulator: one signal, one order, whatever comes back."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from executor.bybit.client import ApiKey, BybitClient
from executor.bybit.sim_state import PRIMARY, SECONDARY
from executor.bybit.simulator import SimulatorServer
from executor.limiter import TokenBucket
from executor.signals import parse_signal
from executor.submitter import Outcome, Submitter, Unresolved
from tests.integration.helpers import signal
from tests.unit_helpers import encode

GOOD = ApiKey("primary", PRIMARY.api_key, SecretStr(PRIMARY.secret))
SPARE = ApiKey("secondary", SECONDARY.api_key, SecretStr(SECONDARY.secret))
WRONG = ApiKey("primary", PRIMARY.api_key, SecretStr("not-the-secret"))


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=5) as client:
        yield client


def make(
    sim: SimulatorServer,
    http: httpx.AsyncClient,
    keys: list[ApiKey],
    *,
    wall_ms: Callable[[], float] = lambda: time.time() * 1000,
    ban_s: float = 600.0,
    **kwargs: Any,
) -> Submitter:
    client = BybitClient(http, sim.url, wall_ms=wall_ms, ban_s=ban_s)
    limiter = TokenBucket(1000, 100, clock=asyncio.get_running_loop().time)
    return Submitter(client, keys, limiter, wall_ms=wall_ms, **kwargs)


def orders(sim: SimulatorServer) -> list[dict[str, Any]]:
    return list(sim.state.orders_as_dicts())


async def test_a_signal_becomes_one_order_with_its_link_id(
    sim: SimulatorServer, http: httpx.AsyncClient
) -> None:
    outcome = await make(sim, http, [GOOD]).submit(parse_signal(encode(signal("one"))))
    (order,) = orders(sim)
    assert outcome == Outcome("accepted", order["orderId"], 0, "OK", "primary", 1)
    assert order["orderLinkId"] == "s-one"
    assert (order["symbol"], order["side"], order["qty"]) == ("BTCUSDT", "Buy", "0.001")


async def test_a_resent_signal_is_reported_accepted_without_a_second_order(
    sim: SimulatorServer, http: httpx.AsyncClient
) -> None:
    submitter = make(sim, http, [GOOD])
    first = await submitter.submit(parse_signal(encode(signal("again"))))
    second = await submitter.submit(parse_signal(encode(signal("again"))))
    assert len(orders(sim)) == 1
    assert second.status == "accepted"
    assert second.order_id == first.order_id
    assert second.ret_code == 110072


async def test_a_lost_answer_is_reconciled_by_lookup_not_resent(
    sim: SimulatorServer, http: httpx.AsyncClient
) -> None:
    sim.state.set_faults(lose_rate=1.0)
    outcome = await make(sim, http, [GOOD]).submit(parse_signal(encode(signal("lost"))))
    (order,) = orders(sim)
    assert outcome.status == "accepted"
    assert outcome.order_id == order["orderId"]
    assert outcome.attempts == 1
    assert sim.state.stats.snapshot()["requests"]["/v5/order/create"] == 1


async def test_maybe_sent_signal_found_at_the_exchange_is_not_sent_again(
    sim: SimulatorServer, http: httpx.AsyncClient
) -> None:
    submitter = make(sim, http, [GOOD])
    placed = await submitter.submit(parse_signal(encode(signal("crash"))))
    again = await submitter.submit(parse_signal(encode(signal("crash"))), maybe_sent=True)
    assert again == Outcome("accepted", placed.order_id, key="primary", attempts=0)
    assert sim.state.stats.snapshot()["requests"]["/v5/order/create"] == 1


async def test_gateway_errors_everywhere_leave_the_signal_unresolved(
    sim: SimulatorServer, http: httpx.AsyncClient
) -> None:
    sim.state.set_faults(error_rate=1.0)
    submitter = make(sim, http, [GOOD], sleep=lambda _s: asyncio.sleep(0))
    with pytest.raises(Unresolved):
        await submitter.submit(parse_signal(encode(signal("dark"))))
    assert orders(sim) == []


async def test_gateway_error_then_recovery_places_exactly_one_order(
    sim: SimulatorServer, http: httpx.AsyncClient
) -> None:
    sim.state.set_faults(error_rate=1.0)

    async def recover(_seconds: float) -> None:
        sim.state.set_faults(error_rate=0.0)

    submitter = make(sim, http, [GOOD], sleep=recover)
    outcome = await submitter.submit(parse_signal(encode(signal("flaky"))))
    assert outcome.status == "accepted"
    assert [o["orderLinkId"] for o in orders(sim)] == ["s-flaky"]


async def test_clock_three_seconds_ahead_is_resynced_after_one_10002(
    sim: SimulatorServer, http: httpx.AsyncClient
) -> None:
    submitter = make(sim, http, [GOOD], wall_ms=lambda: time.time() * 1000 + 3000)
    outcome = await submitter.submit(parse_signal(encode(signal("skew"))))
    assert outcome.status == "accepted"
    assert outcome.attempts == 2
    assert sim.state.stats.snapshot()["ret_codes"].get("10002") == 1
    assert len(orders(sim)) == 1


async def test_refused_key_fails_over_to_the_next_key_with_the_same_link_id(
    sim: SimulatorServer, http: httpx.AsyncClient
) -> None:
    outcome = await make(sim, http, [WRONG, SPARE]).submit(parse_signal(encode(signal("k"))))
    (order,) = orders(sim)
    assert (outcome.status, outcome.key, outcome.attempts) == ("accepted", "secondary", 2)
    assert (order["orderLinkId"], order["apiKey"]) == ("s-k", SECONDARY.api_key)


async def test_refused_key_without_a_spare_ends_rejected_with_its_code(
    sim: SimulatorServer, http: httpx.AsyncClient
) -> None:
    outcome = await make(sim, http, [WRONG]).submit(parse_signal(encode(signal("k"))))
    assert (outcome.status, outcome.ret_code) == ("rejected", 10004)
    assert orders(sim) == []


async def test_venue_rejection_is_final_and_reported_with_code_and_message(
    sim: SimulatorServer, http: httpx.AsyncClient
) -> None:
    outcome = await make(sim, http, [GOOD]).submit(
        parse_signal(encode(signal("tiny", qty="0.0001")))
    )
    assert outcome.status == "rejected"
    assert outcome.ret_code == 10001
    assert outcome.ret_msg
    assert outcome.attempts == 1
    assert orders(sim) == []


async def test_signal_past_its_ttl_is_expired_and_never_sent(
    sim: SimulatorServer, http: httpx.AsyncClient
) -> None:
    old = signal("old", ts=int(time.time() * 1000) - 60_000, ttl_ms=1000)
    outcome = await make(sim, http, [GOOD]).submit(parse_signal(encode(old)))
    assert (outcome.status, outcome.attempts) == ("expired", 0)
    assert sim.state.stats.snapshot()["requests"].get("/v5/order/create", 0) == 0


async def test_rate_limited_order_waits_for_the_reset_and_goes_through(
    sim: SimulatorServer, http: httpx.AsyncClient
) -> None:
    sim.state.set_faults(order_limit=1)
    submitter = make(sim, http, [GOOD])
    first, second = await asyncio.gather(
        submitter.submit(parse_signal(encode(signal("r1")))),
        submitter.submit(parse_signal(encode(signal("r2")))),
    )
    assert {first.status, second.status} == {"accepted"}
    assert sorted(o["orderLinkId"] for o in orders(sim)) == ["s-r1", "s-r2"]
    assert sim.state.stats.snapshot()["ret_codes"].get("10006") == 1
    assert sorted([first.attempts, second.attempts]) == [1, 2]


async def test_dry_run_sends_nothing_and_ends_halted(
    sim: SimulatorServer, http: httpx.AsyncClient
) -> None:
    outcome = await make(sim, http, [GOOD], dry_run=True).submit(parse_signal(encode(signal("d"))))
    assert outcome.status == "halted"
    assert sim.state.stats.snapshot()["requests"].get("/v5/order/create", 0) == 0


async def test_ip_ban_stops_all_traffic_for_the_window_then_the_order_goes_through(
    sim: SimulatorServer, http: httpx.AsyncClient
) -> None:
    sim.state.set_faults(ip_ban=True)
    seen_during_ban: list[int] = []

    async def wait(seconds: float) -> None:
        seen_during_ban.append(sum(sim.state.stats.snapshot()["requests"].values()))
        sim.state.set_faults(ip_ban=False)  # the venue lifts the ban meanwhile
        await asyncio.sleep(seconds)

    submitter = make(sim, http, [GOOD], ban_s=0.3, sleep=wait)
    outcome = await submitter.submit(parse_signal(encode(signal("ban"))))
    assert outcome.status == "accepted"
    assert seen_during_ban == [1]  # the one request that met the 403, nothing more
    assert [o["orderLinkId"] for o in orders(sim)] == ["s-ban"]


async def test_ip_ban_longer_than_the_ttl_ends_expired_without_more_requests(
    sim: SimulatorServer, http: httpx.AsyncClient
) -> None:
    sim.state.set_faults(ip_ban=True)
    short = signal("short", ttl_ms=300)
    outcome = await make(sim, http, [GOOD], ban_s=600).submit(parse_signal(encode(short)))
    assert (outcome.status, outcome.attempts) == ("expired", 1)
    assert sum(sim.state.stats.snapshot()["requests"].values()) == 1
    assert orders(sim) == []
