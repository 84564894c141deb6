"""The simulator's instrument table, ticker prices and per-instrument order rules.

Everything is Decimal: the rules compare exact multiples of steps and ticks.
Rejections are ``(retCode, retMsg)`` pairs worded as Bybit words them where the
wording is known (see the module's tests and the report for the sources).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

Rejection = tuple[int, str]

LINEAR_CATEGORIES = frozenset({"linear", "inverse", "option"})
CATEGORIES = frozenset({"linear", "inverse", "option", "spot"})

_SCALE = Decimal(10) ** 8


@dataclass(frozen=True, slots=True)
class Instrument:
    category: str
    symbol: str
    base_coin: str
    quote_coin: str
    tick_size: Decimal
    min_price: Decimal
    max_price: Decimal
    # Linear: qtyStep. Spot: basePrecision.
    qty_step: Decimal
    min_qty: Decimal
    max_qty: Decimal
    # Linear: maxMktOrderQty. Spot: the same as max_qty.
    max_mkt_qty: Decimal
    # Linear: minNotionalValue. Spot: minOrderAmt.
    min_notional: Decimal
    # Spot only: maxOrderAmt and quotePrecision.
    max_notional: Decimal = Decimal(0)
    quote_precision: Decimal = Decimal(0)

    @property
    def is_spot(self) -> bool:
        return self.category == "spot"

    def info(self) -> dict[str, Any]:
        if self.is_spot:
            return {
                "symbol": self.symbol,
                "baseCoin": self.base_coin,
                "quoteCoin": self.quote_coin,
                "innovation": "0",
                "status": "Trading",
                "marginTrading": "both",
                "stTag": "0",
                "lotSizeFilter": {
                    "basePrecision": str(self.qty_step),
                    "quotePrecision": str(self.quote_precision),
                    "minOrderQty": str(self.min_qty),
                    "maxOrderQty": str(self.max_qty),
                    "minOrderAmt": str(self.min_notional),
                    "maxOrderAmt": str(self.max_notional),
                },
                "priceFilter": {"tickSize": str(self.tick_size)},
                "riskParameters": {"priceLimitRatioX": "0.05", "priceLimitRatioY": "0.1"},
            }
        return {
            "symbol": self.symbol,
            "contractType": "LinearPerpetual",
            "status": "Trading",
            "baseCoin": self.base_coin,
            "quoteCoin": self.quote_coin,
            "launchTime": "1585526400000",
            "deliveryTime": "0",
            "deliveryFeeRate": "",
            "priceScale": str(_decimals(self.tick_size)),
            "leverageFilter": {"minLeverage": "1", "maxLeverage": "100.00", "leverageStep": "0.01"},
            "priceFilter": {
                "minPrice": str(self.min_price),
                "maxPrice": str(self.max_price),
                "tickSize": str(self.tick_size),
            },
            "lotSizeFilter": {
                "maxOrderQty": str(self.max_qty),
                "minOrderQty": str(self.min_qty),
                "qtyStep": str(self.qty_step),
                "postOnlyMaxOrderQty": str(self.max_qty),
                "maxMktOrderQty": str(self.max_mkt_qty),
                "minNotionalValue": str(self.min_notional),
            },
            "unifiedMarginTrade": True,
            "fundingInterval": 480,
            "settleCoin": self.quote_coin,
            "copyTrading": "both",
            "upperFundingRate": "0.005",
            "lowerFundingRate": "-0.005",
            "isPreListing": False,
            "preListingInfo": None,
        }

    def ticker(self, last: Decimal) -> dict[str, Any]:
        bid, ask = str(last - self.tick_size), str(last + self.tick_size)
        view = {
            "symbol": self.symbol,
            "lastPrice": str(last),
            "bid1Price": bid,
            "bid1Size": "1",
            "ask1Price": ask,
            "ask1Size": "1",
            "prevPrice24h": str(last),
            "price24hPcnt": "0",
            "highPrice24h": str(last),
            "lowPrice24h": str(last),
            "turnover24h": "0",
            "volume24h": "0",
        }
        if self.is_spot:
            view["usdIndexPrice"] = str(last)
        else:
            view.update(
                indexPrice=str(last),
                markPrice=str(last),
                prevPrice1h=str(last),
                openInterest="0",
                openInterestValue="0",
                fundingRate="0.0001",
                nextFundingTime="0",
                predictedDeliveryPrice="",
                basisRate="",
                deliveryFeeRate="",
                deliveryTime="0",
                basis="",
            )
        return view


def _decimals(step: Decimal) -> int:
    exponent = step.as_tuple().exponent
    return -exponent if isinstance(exponent, int) and exponent < 0 else 0


def _linear(
    symbol: str,
    base: str,
    step: str,
    tick: str,
    max_qty: str,
    max_mkt_qty: str,
    max_price: str,
) -> Instrument:
    return Instrument(
        category="linear",
        symbol=symbol,
        base_coin=base,
        quote_coin="USDT",
        tick_size=Decimal(tick),
        min_price=Decimal(tick),
        max_price=Decimal(max_price),
        qty_step=Decimal(step),
        min_qty=Decimal(step),
        max_qty=Decimal(max_qty),
        max_mkt_qty=Decimal(max_mkt_qty),
        min_notional=Decimal(5),
    )


def _spot(symbol: str, base: str, base_prec: str, min_qty: str, max_qty: str) -> Instrument:
    return Instrument(
        category="spot",
        symbol=symbol,
        base_coin=base,
        quote_coin="USDT",
        tick_size=Decimal("0.01"),
        min_price=Decimal("0.01"),
        max_price=Decimal("1999999.99"),
        qty_step=Decimal(base_prec),
        min_qty=Decimal(min_qty),
        max_qty=Decimal(max_qty),
        max_mkt_qty=Decimal(max_qty),
        min_notional=Decimal(1),
        max_notional=Decimal(2_000_000),
        quote_precision=Decimal("0.00000001"),
    )


BUILTIN_INSTRUMENTS: tuple[Instrument, ...] = (
    _linear("BTCUSDT", "BTC", "0.001", "0.10", "1190.000", "119.000", "1999999.80"),
    _linear("ETHUSDT", "ETH", "0.01", "0.01", "7240.00", "724.00", "199999.98"),
    _linear("SOLUSDT", "SOL", "0.1", "0.001", "79770.0", "7977.0", "19999.998"),
    _linear("XRPUSDT", "XRP", "1", "0.0001", "1750000", "350000", "199.9998"),
    _linear("DOGEUSDT", "DOGE", "1", "0.00001", "17050000", "3410000", "19.99998"),
    _spot("BTCUSDT", "BTC", "0.000001", "0.000048", "71.73956243"),
    _spot("ETHUSDT", "ETH", "0.00001", "0.00062", "1229.2336343"),
)

BUILTIN_PRICES: Mapping[str, Decimal] = {
    "BTCUSDT": Decimal("65000.00"),
    "ETHUSDT": Decimal("3000.00"),
    "SOLUSDT": Decimal("150.000"),
    "XRPUSDT": Decimal("0.6000"),
    "DOGEUSDT": Decimal("0.15000"),
}


def check_linear(
    inst: Instrument, order_type: str, qty: Decimal, price: Decimal | None, last: Decimal
) -> Rejection | None:
    if qty < inst.min_qty:
        return 10001, "The number of contracts exceeds minimum limit allowed"
    cap = inst.max_mkt_qty if order_type == "Market" else inst.max_qty
    if qty > cap:
        return 10001, (
            "The number of contracts exceeds maximum limit allowed: too large, "
            f"order_qty:{int(qty * _SCALE)} > max_qty:{int(cap * _SCALE)}"
        )
    if qty % inst.qty_step:
        return 10001, "Qty invalid"
    if order_type == "Limit":
        assert price is not None
        if price < inst.min_price or price > inst.max_price:
            return 110003, "Order price is out of permissible range"
        if price % inst.tick_size:
            return 10001, "Price invalid"
        notional = qty * price
    else:
        notional = qty * last
    if notional < inst.min_notional:
        return (
            110094,
            f"Order does not meet minimum order value {inst.min_notional}{inst.quote_coin}",
        )
    return None


def check_spot(
    inst: Instrument,
    side: str,
    order_type: str,
    qty: Decimal,
    price: Decimal | None,
    last: Decimal,
    market_unit: str | None,
) -> Rejection | None:
    if order_type == "Market" and side == "Buy" and market_unit != "baseCoin":
        # A spot market buy is an amount of quote coin unless the client says otherwise.
        if qty % inst.quote_precision:
            return 170148, "Market order amount decimal too long"
        return _spot_amount(inst, qty)
    if qty % inst.qty_step:
        return 170137, "Order volume decimal too long"
    if qty < inst.min_qty:
        return 170136, "Order quantity lower than the minimum."
    if qty > inst.max_qty:
        return 170381, "Order quantity too large."
    if order_type == "Limit":
        assert price is not None
        if price % inst.tick_size:
            return 170134, "Order price decimal too long."
        return _spot_amount(inst, qty * price)
    return _spot_amount(inst, qty * last)


def _spot_amount(inst: Instrument, amount: Decimal) -> Rejection | None:
    if amount < inst.min_notional:
        return 170140, "Order value exceeded lower limit"
    if amount > inst.max_notional:
        return 170124, "Order amount too large."
    return None
