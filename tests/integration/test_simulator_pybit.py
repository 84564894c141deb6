"""Bybit's official SDK (pybit, blocking) against the simulator running in a background thread."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from pybit.exceptions import InvalidRequestError
from pybit.unified_trading import HTTP

from executor.bybit.sim_state import PRIMARY, SECONDARY
from executor.bybit.simulator import SimConfig, SimulatorServer


class ThreadedSimulator:
    """A `SimulatorServer` on its own event loop, so a blocking client can call it."""

    def __init__(self, config: SimConfig) -> None:
        self.server = SimulatorServer(config)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def __enter__(self) -> SimulatorServer:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.server.start(), self._loop).result(timeout=10)
        return self.server

    def __exit__(self, *exc_info: object) -> None:
        try:
            asyncio.run_coroutine_threadsafe(self.server.stop(), self._loop).result(timeout=10)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
            self._loop.close()


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorServer]:
    with ThreadedSimulator(SimConfig(order_limit="unlimited")) as server:
        yield server


def session_for(sim: SimulatorServer, api_key: str, secret: str) -> HTTP:
    # One attempt, no sleeping between retries: a retry here would hide what the simulator said.
    session = HTTP(
        testnet=False,
        api_key=api_key,
        api_secret=secret,
        max_retries=1,
        retry_delay=0,
        recv_window=5000,
        timeout=5,
    )
    session.endpoint = sim.url
    return session


@pytest.fixture
def pybit_session(sim: SimulatorServer) -> Iterator[HTTP]:
    session = session_for(sim, PRIMARY.api_key, PRIMARY.secret)
    yield session
    session.client.close()


def place(session: HTTP, link: str) -> Any:
    return session.place_order(
        category="linear",
        symbol="BTCUSDT",
        side="Buy",
        orderType="Limit",
        qty="0.001",
        price="60000",
        timeInForce="GTC",
        orderLinkId=link,
    )


def test_pybit_places_an_order_the_simulator_records(
    sim: SimulatorServer, pybit_session: HTTP
) -> None:
    answer = place(pybit_session, "pybit-1")
    assert answer["retCode"] == 0
    order_id = answer["result"]["orderId"]
    recorded = [o for o in sim.state.orders if o.order_link_id == "pybit-1"]
    assert [(o.order_id, o.api_key, o.qty, o.price) for o in recorded] == [
        (order_id, PRIMARY.api_key, "0.001", "60000")
    ]
    found = pybit_session.get_open_orders(category="linear", orderLinkId="pybit-1")
    assert [o["orderId"] for o in found["result"]["list"]] == [order_id]


def test_pybit_sees_110072_for_a_repeated_order_link_id(
    sim: SimulatorServer, pybit_session: HTTP
) -> None:
    assert place(pybit_session, "pybit-dup")["retCode"] == 0
    other_key = session_for(sim, SECONDARY.api_key, SECONDARY.secret)
    try:
        with pytest.raises(InvalidRequestError) as raised:
            place(other_key, "pybit-dup")
    finally:
        other_key.client.close()
    assert raised.value.status_code == 110072
    assert raised.value.message == "OrderLinkedID is duplicate"
    assert len([o for o in sim.state.orders if o.order_link_id == "pybit-dup"]) == 1


def test_pybit_with_a_wrong_secret_gets_10004(sim: SimulatorServer) -> None:
    session = session_for(sim, PRIMARY.api_key, "not-the-secret")
    try:
        with pytest.raises(InvalidRequestError) as raised:
            place(session, "pybit-bad-secret")
    finally:
        session.client.close()
    assert raised.value.status_code == 10004
    assert "error sign!" in raised.value.message
    assert not [o for o in sim.state.orders if o.order_link_id == "pybit-bad-secret"]
