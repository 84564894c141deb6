"""Operator risk limits checked before a signal may become an order. Pure.

The gate answers with a short human reason when a signal must not be sent and
``None`` when it may go. It never guesses a price: when a notional limit is set
and no price is known, the signal is refused.

``RiskGate.check`` is check-and-record: a signal it lets through counts toward
its strategy's per-minute budget at that moment, a refused one never does. Call
it last, right before the order is really sent, so refusals further down the
path do not eat the budget.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Context, Decimal
from types import MappingProxyType

from executor.signals import Category, MarketUnit, OrderType, Signal

WINDOW_S = 60.0
_SYMBOL = re.compile(r"[A-Z0-9]{2,32}")
_DECIMAL = re.compile(r"(?:[0-9]+\.?[0-9]*|\.[0-9]+)")
# Signals carry up to 60 digits; the default 28-digit context would round
# products and even normalize(). Every arithmetic step on money goes through this.
EXACT = Context(prec=400)
# Past this many tracked strategies, idle ones are dropped so an unbounded set
# of strategy names cannot grow memory forever.
_SWEEP_AT = 64


def text(number: Decimal) -> str:
    """A Decimal as plain digits, without exponent or trailing zeros."""
    normal = number.normalize(EXACT)
    exponent = normal.as_tuple().exponent
    if isinstance(exponent, int) and exponent > 0:
        normal = normal.quantize(Decimal(1), context=EXACT)
    return format(normal, "f")


def _positive_decimal(what: str, raw: str) -> Decimal:
    value = raw.strip()
    # Decimal() alone would also take "1e3", "1_000" and "NaN": config typos.
    if not _DECIMAL.fullmatch(value):
        raise ValueError(f"{what}: {raw!r} is not a decimal number")
    number = Decimal(value)
    if number <= 0:
        raise ValueError(f"{what}: {raw!r} must be greater than 0")
    return number


def _symbol(what: str, raw: str) -> str:
    symbol = raw.strip().upper()
    if not _SYMBOL.fullmatch(symbol):
        raise ValueError(f"{what}: {raw!r} is not a symbol (2-32 letters or digits)")
    return symbol


def parse_symbols(raw: str | None) -> frozenset[str] | None:
    """``"BTCUSDT,ETHUSDT"`` -> allowlist; empty or None -> any symbol."""
    if raw is None or not raw.strip():
        return None
    return frozenset(_symbol("symbols", item) for item in raw.split(","))


def parse_max_qty(raw: str | None) -> dict[str, Decimal]:
    """``"BTCUSDT=0.5,ETHUSDT=10"`` -> per-symbol maximum quantity."""
    limits: dict[str, Decimal] = {}
    if raw is None or not raw.strip():
        return limits
    for item in raw.split(","):
        name, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"max qty: {item.strip()!r} is not SYMBOL=QTY")
        symbol = _symbol("max qty", name)
        if symbol in limits:
            raise ValueError(f"max qty: {symbol} is given twice")
        limits[symbol] = _positive_decimal(f"max qty for {symbol}", value)
    return limits


def parse_max_notional(raw: str | None) -> Decimal | None:
    if raw is None or not raw.strip():
        return None
    return _positive_decimal("max notional", raw)


def parse_orders_per_minute(raw: str | int | None) -> int | None:
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None
    if isinstance(raw, bool):
        raise ValueError(f"max orders per minute: {raw!r} is not a whole number")
    try:
        count = int(raw.strip()) if isinstance(raw, str) else int(raw)
    except ValueError:
        raise ValueError(f"max orders per minute: {raw!r} is not a whole number") from None
    if count <= 0:
        raise ValueError(f"max orders per minute: {raw!r} must be greater than 0")
    return count


@dataclass(frozen=True)
class RiskLimits:
    symbols: frozenset[str] | None = None
    max_qty: Mapping[str, Decimal] = field(default_factory=lambda: MappingProxyType({}))
    max_notional: Decimal | None = None
    max_orders_per_minute: int | None = None

    @classmethod
    def parse(
        cls,
        symbols: str | None = None,
        max_qty: str | None = None,
        max_notional: str | None = None,
        max_orders_per_minute: str | int | None = None,
    ) -> RiskLimits:
        """Build limits from the operator's strings; ValueError names the bad part."""
        return cls(
            symbols=parse_symbols(symbols),
            max_qty=MappingProxyType(parse_max_qty(max_qty)),
            max_notional=parse_max_notional(max_notional),
            max_orders_per_minute=parse_orders_per_minute(max_orders_per_minute),
        )


def quote_amount(signal: Signal) -> bool:
    """True when ``qty`` is an amount of quote coin (a spot market order in quoteCoin)."""
    return (
        signal.category is Category.SPOT
        and signal.order_type is OrderType.MARKET
        and signal.market_unit is MarketUnit.QUOTE
    )


def order_price(signal: Signal, last_price: Decimal | None) -> Decimal | None:
    """The price a notional is worked out at: the limit price, else the last trade."""
    if signal.order_type is OrderType.LIMIT:
        return signal.price
    return last_price


class RiskGate:
    def __init__(self, limits: RiskLimits, clock: Callable[[], float]) -> None:
        self.limits = limits
        self._clock = clock
        self._sent: dict[str, deque[float]] = {}

    def check(self, signal: Signal, price: Decimal | None) -> str | None:
        """Why ``signal`` must not be sent, or None (and the order is counted).

        ``price`` is the last traded price; it is only used for market orders.
        """
        reason = self._limits_reason(signal, order_price(signal, price))
        if reason is not None:
            return reason
        budget = self.limits.max_orders_per_minute
        if budget is None:
            return None
        strategy = signal.strategy or ""
        now = self._clock()
        sent = self._window(strategy, now)
        if len(sent) >= budget:
            return f"strategy {strategy or '(none)'} over {budget} orders/minute"
        sent.append(now)
        return None

    def _limits_reason(self, signal: Signal, price: Decimal | None) -> str | None:
        limits, symbol = self.limits, signal.symbol
        if limits.symbols is not None and symbol not in limits.symbols:
            return f"symbol {symbol} not allowed"
        cap = limits.max_qty.get(symbol)
        if cap is not None:
            if not quote_amount(signal):
                if signal.qty > cap:
                    return f"qty {text(signal.qty)} above max {text(cap)} for {symbol}"
            elif price is None:
                return f"no price for {symbol} to check quote amount against max qty"
            elif signal.qty > EXACT.multiply(cap, price):
                # Compared as a product: dividing would round, multiplying is exact.
                return (
                    f"quote amount {text(signal.qty)} above max qty {text(cap)}"
                    f" at price {text(price)} for {symbol}"
                )
        if limits.max_notional is not None:
            if quote_amount(signal):
                notional = signal.qty
            elif price is None:
                return f"no price for {symbol} to check max notional"
            else:
                notional = EXACT.multiply(signal.qty, price)
            if notional > limits.max_notional:
                return f"notional {text(notional)} above max {text(limits.max_notional)}"
        return None

    def _window(self, strategy: str, now: float) -> deque[float]:
        if len(self._sent) > _SWEEP_AT:
            for name in list(self._sent):
                self._expire(self._sent[name], now)
                if not self._sent[name]:
                    del self._sent[name]
        sent = self._sent.setdefault(strategy, deque())
        self._expire(sent, now)
        return sent

    @staticmethod
    def _expire(sent: deque[float], now: float) -> None:
        # An order exactly WINDOW_S old has left the window: (now - 60, now].
        while sent and sent[0] <= now - WINDOW_S:
            sent.popleft()
