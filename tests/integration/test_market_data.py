"""MarketData against the in-process simulator over loopback HTTP."""

from __future__ import annotations

from decimal import Decimal

from executor.bybit.client import BybitClient
from executor.bybit.sim_instruments import BUILTIN_INSTRUMENTS
from executor.bybit.simulator import SimulatorServer
from executor.instruments import Instrument, MarketData


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def asked(sim: SimulatorServer, path: str) -> int:
    return int(sim.state.stats.requests[path])


INFO = "/v5/market/instruments-info"
TICKERS = "/v5/market/tickers"


async def test_linear_instrument_matches_the_simulator_table(
    sim: SimulatorServer, bybit: BybitClient
) -> None:
    market = MarketData(bybit, clock=FakeClock())
    got = await market.instrument("linear", "BTCUSDT")
    table = next(i for i in BUILTIN_INSTRUMENTS if (i.category, i.symbol) == ("linear", "BTCUSDT"))
    assert got == Instrument(
        category="linear",
        symbol="BTCUSDT",
        qty_step=Decimal("0.001"),
        min_qty=Decimal("0.001"),
        max_qty=Decimal("1190.000"),
        tick_size=Decimal("0.10"),
        max_mkt_qty=Decimal("119.000"),
        min_notional=Decimal(5),
        min_price=Decimal("0.10"),
        max_price=Decimal("1999999.80"),
    )
    assert got is not None
    assert (got.qty_step, got.min_qty, got.max_qty, got.max_mkt_qty) == (
        table.qty_step,
        table.min_qty,
        table.max_qty,
        table.max_mkt_qty,
    )
    assert (got.tick_size, got.min_price, got.max_price, got.min_notional) == (
        table.tick_size,
        table.min_price,
        table.max_price,
        table.min_notional,
    )


async def test_spot_instrument_is_read_from_its_own_row(bybit: BybitClient) -> None:
    got = await MarketData(bybit, clock=FakeClock()).instrument("spot", "ETHUSDT")
    assert got is not None
    assert (got.category, got.qty_step, got.min_qty, got.min_notional, got.max_notional) == (
        "spot",
        Decimal("0.00001"),
        Decimal("0.00062"),
        Decimal(1),
        Decimal(2000000),
    )


async def test_instruments_are_cached_until_the_refresh_interval(
    sim: SimulatorServer, bybit: BybitClient
) -> None:
    clock = FakeClock()
    market = MarketData(bybit, refresh_s=3600, clock=clock)
    first = await market.instrument("linear", "BTCUSDT")
    clock.now += 3599
    assert await market.instrument("linear", "BTCUSDT") == first
    assert asked(sim, INFO) == 1
    clock.now += 1
    assert await market.instrument("linear", "BTCUSDT") == first
    assert asked(sim, INFO) == 2


async def test_unknown_symbol_is_none(sim: SimulatorServer, bybit: BybitClient) -> None:
    market = MarketData(bybit, clock=FakeClock())
    assert await market.instrument("linear", "NOPEUSDT") is None
    # Listed in spot only for ETH/BTC: SOL is not a spot instrument in the simulator.
    assert await market.instrument("spot", "SOLUSDT") is None
    assert await market.last_price("linear", "NOPEUSDT") is None


async def test_last_price_follows_the_ticker_after_the_ttl(
    sim: SimulatorServer, bybit: BybitClient
) -> None:
    clock = FakeClock()
    market = MarketData(bybit, price_ttl_s=5, clock=clock)
    assert await market.last_price("linear", "BTCUSDT") == Decimal("65000.00")
    sim.state.set_price("BTCUSDT", "61234.50", category="linear")
    clock.now += 4.9
    assert await market.last_price("linear", "BTCUSDT") == Decimal("65000.00")
    clock.now += 0.1
    price = await market.last_price("linear", "BTCUSDT")
    assert price == Decimal("61234.50")
    assert str(price) == "61234.50"
    assert asked(sim, TICKERS) == 2


async def test_prices_are_kept_per_category(sim: SimulatorServer, bybit: BybitClient) -> None:
    sim.state.set_price("BTCUSDT", "64000", category="spot")
    market = MarketData(bybit, clock=FakeClock())
    assert await market.last_price("spot", "BTCUSDT") == Decimal(64000)
    assert await market.last_price("linear", "BTCUSDT") == Decimal("65000.00")


async def test_cached_instrument_is_served_while_the_venue_fails(
    sim: SimulatorServer, bybit: BybitClient
) -> None:
    clock = FakeClock()
    market = MarketData(bybit, refresh_s=60, price_ttl_s=5, retry_s=5, clock=clock)
    first = await market.instrument("linear", "BTCUSDT")
    assert first is not None
    assert await market.last_price("linear", "BTCUSDT") == Decimal("65000.00")
    sim.state.set_faults(error_rate=1.0)
    clock.now += 61
    assert await market.instrument("linear", "BTCUSDT") == first
    assert await market.last_price("linear", "BTCUSDT") == Decimal("65000.00")
    assert (asked(sim, INFO), asked(sim, TICKERS)) == (2, 2)
    assert sim.state.stats.faults["error"] == 2
    # A failed fetch is not repeated on every call: the next try waits retry_s.
    clock.now += 4
    assert await market.instrument("linear", "BTCUSDT") == first
    assert asked(sim, INFO) == 2
    clock.now += 1
    assert await market.instrument("linear", "BTCUSDT") == first
    assert asked(sim, INFO) == 3
    # Nothing cached and the venue failing: nothing to serve.
    assert await market.instrument("linear", "ETHUSDT") is None
    # Once the venue answers again the fresh rules are fetched.
    sim.state.set_faults(error_rate=0.0)
    clock.now += 5
    eth = await market.instrument("linear", "ETHUSDT")
    assert eth is not None
    assert eth.qty_step == Decimal("0.01")
