"""Instrument rows and fitting a signal to them. Pure: no network."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from executor.instruments import Fitted, Instrument, Refusal, fit, round_down
from executor.signals import Signal

# Shaped like the live venue's linear BTCUSDT row (values trimmed to the filters).
LINEAR_ROW: dict[str, Any] = {
    "symbol": "BTCUSDT",
    "status": "Trading",
    "priceFilter": {"minPrice": "0.10", "maxPrice": "1999999.80", "tickSize": "0.10"},
    "lotSizeFilter": {
        "maxOrderQty": "1190.000",
        "minOrderQty": "0.001",
        "qtyStep": "0.001",
        "postOnlyMaxOrderQty": "1190.000",
        "maxMktOrderQty": "119.000",
        "minNotionalValue": "5",
    },
}
SPOT_ROW: dict[str, Any] = {
    "symbol": "BTCUSDT",
    "status": "Trading",
    "lotSizeFilter": {
        "basePrecision": "0.000001",
        "quotePrecision": "0.00000001",
        "minOrderQty": "0.000048",
        "maxOrderQty": "71.73956243",
        "minOrderAmt": "1",
        "maxOrderAmt": "2000000",
    },
    "priceFilter": {"tickSize": "0.01"},
}

BTC = Instrument.from_row("linear", LINEAR_ROW)
SPOT_BTC = Instrument.from_row("spot", SPOT_ROW)
SOL = Instrument(
    category="linear",
    symbol="SOLUSDT",
    qty_step=Decimal("0.1"),
    min_qty=Decimal("0.1"),
    max_qty=Decimal("79770.0"),
    tick_size=Decimal("0.001"),
    max_mkt_qty=Decimal("7977.0"),
    min_notional=Decimal(5),
)


def sig(**fields: Any) -> Signal:
    base: dict[str, Any] = {
        "id": "s-1",
        "symbol": "BTCUSDT",
        "side": "Buy",
        "order_type": "Market",
        "qty": "0.001",
        "ts": 1_700_000_000_000,
    }
    base.update(fields)
    return Signal.model_validate(base)


def fitted(result: Fitted | Refusal) -> Fitted:
    assert isinstance(result, Fitted), result
    return result


def refused(result: Fitted | Refusal) -> str:
    assert isinstance(result, Refusal), result
    return result.reason


# ---- rows ------------------------------------------------------------------------


def test_linear_row_is_read_into_decimals() -> None:
    parsed = Instrument.from_row("linear", LINEAR_ROW)
    assert parsed == Instrument(
        category="linear",
        symbol="BTCUSDT",
        qty_step=Decimal("0.001"),
        min_qty=Decimal("0.001"),
        max_qty=Decimal("1190.000"),
        tick_size=Decimal("0.10"),
        max_mkt_qty=Decimal("119.000"),
        min_notional=Decimal(5),
        max_notional=None,
        quote_step=None,
        min_price=Decimal("0.10"),
        max_price=Decimal("1999999.80"),
    )
    assert str(parsed.qty_step) == "0.001"


def test_spot_row_takes_base_precision_as_step_and_min_order_amt_as_min_notional() -> None:
    parsed = Instrument.from_row("spot", SPOT_ROW)
    assert parsed == Instrument(
        category="spot",
        symbol="BTCUSDT",
        qty_step=Decimal("0.000001"),
        min_qty=Decimal("0.000048"),
        max_qty=Decimal("71.73956243"),
        tick_size=Decimal("0.01"),
        max_mkt_qty=None,
        min_notional=Decimal(1),
        max_notional=Decimal(2000000),
        quote_step=Decimal("0.00000001"),
        min_price=None,
        max_price=None,
    )


def test_inverse_row_without_min_notional_has_none() -> None:
    row = {**LINEAR_ROW, "lotSizeFilter": dict(LINEAR_ROW["lotSizeFilter"])}
    del row["lotSizeFilter"]["minNotionalValue"]
    assert Instrument.from_row("inverse", row).min_notional is None


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"symbol": "X"}, "instrument row has no lotSizeFilter"),
        ({"symbol": "X", "lotSizeFilter": {}, "priceFilter": {}}, "instrument row has no qtyStep"),
        (
            {**LINEAR_ROW, "priceFilter": {"tickSize": "ten"}},
            "instrument tickSize is not a decimal: 'ten'",
        ),
        (
            {**LINEAR_ROW, "priceFilter": {"tickSize": "-1"}},
            "instrument tickSize is not a usable decimal: '-1'",
        ),
    ],
)
def test_broken_rows_raise_value_error(row: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError) as caught:
        Instrument.from_row("linear", row)
    assert str(caught.value) == message


# ---- rounding --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("qty", "step", "expected"),
    [
        ("0.0019", "0.001", "0.001"),
        ("1.55", "0.1", "1.5"),
        ("1.5", "0.1", "1.5"),
        ("0.0030", "0.001", "0.003"),
        ("1750", "1", "1750"),
        ("1799.9", "100", "1700"),
        ("0.99999999", "0.000001", "0.999999"),
    ],
)
def test_round_down_never_rounds_up_and_prints_plain(qty: str, step: str, expected: str) -> None:
    rounded = round_down(Decimal(qty), Decimal(step))
    assert str(rounded) == expected
    assert format(rounded, "f") == expected


def test_qty_is_rounded_down_to_the_step() -> None:
    result = fitted(fit(sig(qty="0.0019"), BTC, Decimal(65000)))
    assert result == Fitted(qty=Decimal("0.001"), changed=True)
    assert format(result.qty, "f") == "0.001"
    sol = fitted(fit(sig(symbol="SOLUSDT", qty="1.55"), SOL, Decimal(150)))
    assert sol == Fitted(qty=Decimal("1.5"), changed=True)


def test_exact_multiples_are_untouched() -> None:
    assert fit(sig(qty="0.005"), BTC, Decimal(65000)) == Fitted(Decimal("0.005"), changed=False)
    # Trailing zeros are the same number: not a change, and printed without them.
    result = fitted(fit(sig(qty="0.00500"), BTC, Decimal(65000)))
    assert result.changed is False
    assert format(result.qty, "f") == "0.005"
    whole = fitted(fit(sig(symbol="SOLUSDT", qty="100"), SOL, Decimal(150)))
    assert (format(whole.qty, "f"), whole.changed) == ("100", False)


def test_below_minimum_is_refused() -> None:
    assert refused(fit(sig(qty="0.0004"), BTC, None)) == (
        "qty 0.0004 below minimum 0.001 for BTCUSDT"
    )


def test_below_minimum_only_after_rounding_is_refused() -> None:
    # A minimum that is not a whole number of steps: 0.029 clears it, 0.02 does not.
    inst = Instrument(
        "linear", "BTCUSDT", Decimal("0.01"), Decimal("0.025"), Decimal(10), Decimal(1)
    )
    assert refused(fit(sig(qty="0.029"), inst, None)) == (
        "qty 0.029 rounds down to 0.02 (step 0.01), below minimum 0.025 for BTCUSDT"
    )
    assert fit(sig(qty="0.031"), inst, None) == Fitted(Decimal("0.03"), changed=True)


def test_qty_rounding_to_zero_is_refused_even_with_a_zero_minimum() -> None:
    inst = Instrument("linear", "BTCUSDT", Decimal("0.01"), Decimal(0), Decimal(10), Decimal(1))
    assert refused(fit(sig(qty="0.009"), inst, None)) == (
        "qty 0.009 below minimum 0.01 for BTCUSDT"
    )


def test_above_maximum_is_refused_for_limit_orders() -> None:
    order = sig(order_type="Limit", qty="1190.001", price="65000")
    assert refused(fit(order, BTC, None)) == "qty 1190.001 above maximum 1190 for BTCUSDT"
    assert fitted(fit(sig(order_type="Limit", qty="1190", price="65000"), BTC, None)).qty == 1190


def test_market_orders_use_the_market_maximum() -> None:
    assert refused(fit(sig(qty="120"), BTC, Decimal(65000))) == (
        "qty 120 above market maximum 119 for BTCUSDT"
    )
    assert fit(sig(qty="119"), BTC, Decimal(65000)) == Fitted(Decimal(119), changed=False)
    # The same qty as a Limit order is only bound by maxOrderQty.
    limit = sig(order_type="Limit", qty="120", price="65000")
    assert fit(limit, BTC, None) == Fitted(Decimal(120), changed=False)


def test_rounding_down_can_bring_qty_under_the_maximum() -> None:
    assert fit(sig(qty="119.0009"), BTC, Decimal(65000)) == Fitted(Decimal(119), changed=True)


def test_min_notional_uses_the_limit_price_of_the_signal() -> None:
    low = sig(order_type="Limit", qty="0.001", price="4000")
    assert refused(fit(low, BTC, Decimal(65000))) == "notional 4 below minimum 5 for BTCUSDT"
    edge = sig(order_type="Limit", qty="0.001", price="5000")
    assert fit(edge, BTC, Decimal(1)) == Fitted(Decimal("0.001"), changed=False)


def test_min_notional_uses_the_last_price_for_market_orders() -> None:
    assert refused(fit(sig(qty="0.001"), BTC, Decimal("4999.90"))) == (
        "notional 4.9999 below minimum 5 for BTCUSDT"
    )
    assert fit(sig(qty="0.001"), BTC, Decimal(5000)) == Fitted(Decimal("0.001"), changed=False)


def test_min_notional_is_checked_on_the_rounded_qty() -> None:
    # 0.0019 * 4000 = 7.6 would pass; the 0.001 actually sent is worth 4.
    assert refused(fit(sig(qty="0.0019"), BTC, Decimal(4000))) == (
        "notional 4 below minimum 5 for BTCUSDT"
    )


def test_min_notional_is_skipped_when_no_price_is_known() -> None:
    assert fit(sig(qty="0.001"), BTC, None) == Fitted(Decimal("0.001"), changed=False)


def test_limit_price_must_lie_on_the_tick() -> None:
    off = sig(order_type="Limit", qty="0.001", price="65000.05")
    assert refused(fit(off, BTC, None)) == "price 65000.05 not on tick 0.1 for BTCUSDT"
    on = sig(order_type="Limit", qty="0.001", price="65000.30")
    assert fit(on, BTC, None) == Fitted(Decimal("0.001"), changed=False)


def test_limit_price_must_lie_within_the_price_band() -> None:
    high = sig(order_type="Limit", qty="0.001", price="2000000")
    assert refused(fit(high, BTC, None)) == "price 2000000 above maximum 1999999.8 for BTCUSDT"
    inst = Instrument(
        "linear",
        "BTCUSDT",
        Decimal("0.001"),
        Decimal("0.001"),
        Decimal(10),
        Decimal("0.1"),
        min_price=Decimal("0.5"),
    )
    low = sig(order_type="Limit", qty="1", price="0.4")
    assert refused(fit(low, inst, None)) == "price 0.4 below minimum 0.5 for BTCUSDT"


def test_market_orders_ignore_the_tick() -> None:
    # A market order has no price of its own; an off-tick last price is irrelevant.
    assert fit(sig(qty="1"), BTC, Decimal("65000.05")) == Fitted(Decimal(1), changed=False)


# ---- spot ------------------------------------------------------------------------


def test_spot_market_qty_in_base_coin_uses_base_precision_and_min_order_amt() -> None:
    order = sig(category="spot", qty="0.0000489")
    assert fit(order, SPOT_BTC, Decimal(65000)) == Fitted(Decimal("0.000048"), changed=True)
    tiny = sig(category="spot", qty="0.000048")
    assert refused(fit(tiny, SPOT_BTC, Decimal(20000))) == (
        "notional 0.96 below minimum 1 for BTCUSDT"
    )
    assert refused(fit(sig(category="spot", qty="0.00004"), SPOT_BTC, None)) == (
        "qty 0.00004 below minimum 0.000048 for BTCUSDT"
    )


def test_spot_market_qty_in_quote_coin_is_bound_by_the_amount_rules() -> None:
    order = sig(category="spot", qty="10.123456789", market_unit="quoteCoin")
    assert fit(order, SPOT_BTC, None) == Fitted(Decimal("10.12345678"), changed=True)
    small = sig(category="spot", qty="0.5", market_unit="quoteCoin")
    assert refused(fit(small, SPOT_BTC, None)) == "notional 0.5 below minimum 1 for BTCUSDT"
    huge = sig(category="spot", qty="2000000.01", market_unit="quoteCoin")
    assert refused(fit(huge, SPOT_BTC, None)) == (
        "notional 2000000.01 above maximum 2000000 for BTCUSDT"
    )


def test_spot_limit_notional_above_max_order_amt_is_refused() -> None:
    order = sig(category="spot", order_type="Limit", qty="40", price="60000")
    assert refused(fit(order, SPOT_BTC, None)) == (
        "notional 2400000 above maximum 2000000 for BTCUSDT"
    )
