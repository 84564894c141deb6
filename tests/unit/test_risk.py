"""RiskLimits parsing and RiskGate rules on a fake monotonic clock. Nothing sleeps."""

from __future__ import annotations

from decimal import Decimal
from types import MappingProxyType
from typing import Any

import pytest

from executor.risk import RiskGate, RiskLimits, text
from executor.signals import Signal


class FakeClock:
    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def sig(**fields: Any) -> Signal:
    base: dict[str, Any] = {
        "id": "s-1",
        "symbol": "BTCUSDT",
        "side": "Buy",
        "order_type": "Market",
        "qty": "0.1",
        "ts": 1_700_000_000_000,
    }
    base.update(fields)
    return Signal.model_validate(base)


def gate(clock: FakeClock | None = None, **limits: Any) -> RiskGate:
    return RiskGate(RiskLimits(**limits), clock or FakeClock())


# ---- parsing ---------------------------------------------------------------------


def test_parse_reads_every_operator_string() -> None:
    limits = RiskLimits.parse(
        symbols=" btcusdt, ETHUSDT ",
        max_qty="BTCUSDT=0.5, ethusdt = 10",
        max_notional="50000.00",
        max_orders_per_minute="30",
    )
    assert limits.symbols == frozenset({"BTCUSDT", "ETHUSDT"})
    assert dict(limits.max_qty) == {"BTCUSDT": Decimal("0.5"), "ETHUSDT": Decimal("10")}
    assert str(limits.max_qty["BTCUSDT"]) == "0.5"
    assert limits.max_notional == Decimal("50000.00")
    assert limits.max_orders_per_minute == 30


@pytest.mark.parametrize("empty", [None, "", "   "])
def test_parse_empty_strings_mean_no_limit(empty: str | None) -> None:
    limits = RiskLimits.parse(empty, empty, empty, empty)
    assert limits == RiskLimits(None, MappingProxyType({}), None, None)
    assert limits.symbols is None
    assert dict(limits.max_qty) == {}


def test_parsed_max_qty_cannot_be_changed() -> None:
    limits = RiskLimits.parse(max_qty="BTCUSDT=1")
    with pytest.raises(TypeError):
        limits.max_qty["BTCUSDT"] = Decimal(100)  # type: ignore[index]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"symbols": "BTCUSDT,,ETHUSDT"}, "symbols: '' is not a symbol (2-32 letters or digits)"),
        ({"symbols": "BTC-USDT"}, "symbols: 'BTC-USDT' is not a symbol (2-32 letters or digits)"),
        ({"max_qty": "BTCUSDT"}, "max qty: 'BTCUSDT' is not SYMBOL=QTY"),
        ({"max_qty": "BTCUSDT=0.5,"}, "max qty: '' is not SYMBOL=QTY"),
        ({"max_qty": "BTCUSDT:0.5"}, "max qty: 'BTCUSDT:0.5' is not SYMBOL=QTY"),
        ({"max_qty": "=0.5"}, "max qty: '' is not a symbol (2-32 letters or digits)"),
        ({"max_qty": "BTCUSDT=abc"}, "max qty for BTCUSDT: 'abc' is not a decimal number"),
        ({"max_qty": "BTCUSDT=1e3"}, "max qty for BTCUSDT: '1e3' is not a decimal number"),
        ({"max_qty": "BTCUSDT=NaN"}, "max qty for BTCUSDT: 'NaN' is not a decimal number"),
        ({"max_qty": "BTCUSDT=-1"}, "max qty for BTCUSDT: '-1' is not a decimal number"),
        ({"max_qty": "BTCUSDT=0"}, "max qty for BTCUSDT: '0' must be greater than 0"),
        ({"max_qty": "BTCUSDT=0.000"}, "max qty for BTCUSDT: '0.000' must be greater than 0"),
        ({"max_qty": "BTCUSDT=1,btcusdt=2"}, "max qty: BTCUSDT is given twice"),
        ({"max_qty": "BTCUSDT=1=2"}, "max qty for BTCUSDT: '1=2' is not a decimal number"),
        ({"max_notional": "lots"}, "max notional: 'lots' is not a decimal number"),
        ({"max_notional": "0"}, "max notional: '0' must be greater than 0"),
        ({"max_orders_per_minute": "1.5"}, "max orders per minute: '1.5' is not a whole number"),
        ({"max_orders_per_minute": "0"}, "max orders per minute: '0' must be greater than 0"),
        ({"max_orders_per_minute": -3}, "max orders per minute: -3 must be greater than 0"),
    ],
)
def test_parse_refuses_bad_syntax_with_a_clear_message(
    kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError) as caught:
        RiskLimits.parse(**kwargs)
    assert str(caught.value) == message


# ---- rules -----------------------------------------------------------------------


def test_no_limits_let_everything_through() -> None:
    assert gate().check(sig(qty="1000000"), None) is None


def test_symbol_outside_the_allowlist_is_refused() -> None:
    risk = gate(symbols=frozenset({"BTCUSDT", "ETHUSDT"}))
    assert risk.check(sig(symbol="DOGEUSDT"), None) == "symbol DOGEUSDT not allowed"
    assert risk.check(sig(symbol="ETHUSDT"), None) is None


def test_qty_above_the_symbol_maximum_is_refused_and_equal_passes() -> None:
    risk = gate(max_qty={"BTCUSDT": Decimal("0.5")})
    assert risk.check(sig(qty="2"), None) == "qty 2 above max 0.5 for BTCUSDT"
    assert risk.check(sig(qty="0.50000000001"), None) == (
        "qty 0.50000000001 above max 0.5 for BTCUSDT"
    )
    assert risk.check(sig(qty="0.5"), None) is None
    # No cap for this symbol: any qty passes this rule.
    assert risk.check(sig(symbol="ETHUSDT", qty="1000"), None) is None


def test_market_notional_uses_the_last_price() -> None:
    risk = gate(max_notional=Decimal(50000))
    order = sig(qty="2")
    assert risk.check(order, Decimal("60000")) == "notional 120000 above max 50000"
    assert risk.check(order, Decimal("25000")) is None


def test_limit_notional_uses_the_signal_price_not_the_last_price() -> None:
    risk = gate(max_notional=Decimal(50000))
    order = sig(order_type="Limit", qty="2", price="30000")
    assert risk.check(order, Decimal("10")) == "notional 60000 above max 50000"
    cheap = sig(order_type="Limit", qty="2", price="20000")
    assert risk.check(cheap, Decimal("90000")) is None
    # The limit price is enough: no last price needed.
    assert risk.check(cheap, None) is None


def test_notional_limit_without_any_price_is_refused_never_guessed() -> None:
    risk = gate(max_notional=Decimal(50000))
    assert risk.check(sig(qty="0.001"), None) == "no price for BTCUSDT to check max notional"


def test_no_notional_limit_needs_no_price() -> None:
    assert gate(max_qty={"BTCUSDT": Decimal(1)}).check(sig(qty="1"), None) is None


def test_decimal_arithmetic_is_exact_at_the_boundary() -> None:
    # In binary floating point 0.1 * 3 is 0.30000000000000004 and would be refused.
    risk = gate(max_notional=Decimal("0.3"), max_qty={"BTCUSDT": Decimal("0.1")})
    assert risk.check(sig(qty="0.1"), Decimal(3)) is None
    over = risk.check(sig(qty="0.1"), Decimal("3.000000000000000000000000000001"))
    assert over == "notional 0.3000000000000000000000000000001 above max 0.3"


def test_many_digit_qty_is_compared_without_rounding() -> None:
    # 40 significant digits: the default 28-digit context would round to the cap.
    qty = "0.5000000000000000000000000000000000000001"
    risk = gate(max_qty={"BTCUSDT": Decimal("0.5")})
    assert risk.check(sig(qty=qty), None) == f"qty {qty} above max 0.5 for BTCUSDT"


def test_spot_market_qty_in_base_coin_is_checked_like_any_qty() -> None:
    risk = gate(max_qty={"BTCUSDT": Decimal("0.5")}, max_notional=Decimal(50000))
    base = sig(category="spot", qty="0.6")
    assert risk.check(base, Decimal(1000)) == "qty 0.6 above max 0.5 for BTCUSDT"
    fine = sig(category="spot", qty="0.5", market_unit="baseCoin")
    assert risk.check(fine, Decimal(60000)) is None
    assert risk.check(fine, Decimal(120000)) == "notional 60000 above max 50000"


def test_spot_market_qty_in_quote_coin_is_an_amount() -> None:
    risk = gate(max_qty={"BTCUSDT": Decimal("0.5")}, max_notional=Decimal(50000))
    order = sig(category="spot", qty="40000", market_unit="quoteCoin")
    # 40000 USDT at 65000 is ~0.615 BTC: over the 0.5 BTC cap.
    assert risk.check(order, Decimal(65000)) == (
        "quote amount 40000 above max qty 0.5 at price 65000 for BTCUSDT"
    )
    assert risk.check(order, Decimal(80000)) is None
    assert risk.check(order, None) == ("no price for BTCUSDT to check quote amount against max qty")
    big = sig(category="spot", symbol="ETHUSDT", qty="60000", market_unit="quoteCoin")
    # The amount is the notional itself: no price needed for that rule.
    assert risk.check(big, None) == "notional 60000 above max 50000"


def test_symbol_rule_comes_first() -> None:
    risk = gate(symbols=frozenset({"BTCUSDT"}), max_notional=Decimal(1))
    assert risk.check(sig(symbol="ETHUSDT"), None) == "symbol ETHUSDT not allowed"


# ---- per-strategy window -----------------------------------------------------------


def test_window_slides_over_one_minute() -> None:
    clock = FakeClock()
    risk = gate(clock, max_orders_per_minute=30)
    for second in range(30):
        clock.now = float(second)
        assert risk.check(sig(strategy="s1"), None) is None, second
    clock.now = 29.5
    assert risk.check(sig(strategy="s1"), None) == "strategy s1 over 30 orders/minute"
    clock.now = 59.999
    assert risk.check(sig(strategy="s1"), None) == "strategy s1 over 30 orders/minute"
    # The order sent at t=0 leaves the window at t=60, making room for exactly one.
    clock.now = 60.0
    assert risk.check(sig(strategy="s1"), None) is None
    assert risk.check(sig(strategy="s1"), None) == "strategy s1 over 30 orders/minute"
    clock.now = 61.0
    assert risk.check(sig(strategy="s1"), None) is None


def test_refused_signals_do_not_use_the_budget() -> None:
    clock = FakeClock()
    risk = gate(clock, max_orders_per_minute=2, max_qty={"BTCUSDT": Decimal(1)})
    for _ in range(5):
        assert risk.check(sig(strategy="s1", qty="5"), None) == "qty 5 above max 1 for BTCUSDT"
    # Refused by the window itself: not counted either, so the budget stays at 2.
    assert risk.check(sig(strategy="s1"), None) is None
    assert risk.check(sig(strategy="s1"), None) is None
    for _ in range(3):
        assert risk.check(sig(strategy="s1"), None) == "strategy s1 over 2 orders/minute"
    clock.now = 60.0
    assert risk.check(sig(strategy="s1"), None) is None
    assert risk.check(sig(strategy="s1"), None) is None
    assert risk.check(sig(strategy="s1"), None) == "strategy s1 over 2 orders/minute"


def test_each_strategy_has_its_own_window_and_none_counts_as_empty() -> None:
    risk = gate(max_orders_per_minute=1)
    assert risk.check(sig(strategy="a"), None) is None
    assert risk.check(sig(strategy="b"), None) is None
    assert risk.check(sig(), None) is None
    assert risk.check(sig(strategy="a"), None) == "strategy a over 1 orders/minute"
    assert risk.check(sig(), None) == "strategy (none) over 1 orders/minute"
    # A missing strategy and an empty one share the "" budget.
    assert risk.check(sig(strategy=""), None) == "strategy (none) over 1 orders/minute"


def test_many_idle_strategies_do_not_change_live_budgets() -> None:
    clock = FakeClock()
    risk = gate(clock, max_orders_per_minute=1)
    assert risk.check(sig(strategy="keep"), None) is None
    for n in range(200):
        assert risk.check(sig(strategy=f"x{n}"), None) is None
    clock.now = 30.0
    assert risk.check(sig(strategy="keep"), None) == "strategy keep over 1 orders/minute"
    clock.now = 90.0
    assert risk.check(sig(strategy="x0"), None) is None


def test_text_never_uses_an_exponent() -> None:
    assert text(Decimal("1.75E+3")) == "1750"
    assert text(Decimal("120000.000")) == "120000"
    assert text(Decimal("0.00010")) == "0.0001"
    assert text(Decimal("1E-9")) == "0.000000001"
