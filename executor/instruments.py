"""Instrument rules from ``/v5/market/instruments-info`` and fitting a signal to them.

``Instrument.from_row`` and ``fit`` are pure. ``MarketData`` is the thin async
shell: it caches instrument rows and last prices fetched through any client
with ``get(None, path, params)`` (``BybitClient`` in the daemon).

Quantities are only ever rounded down: a signal may shrink to the venue's step,
never grow. Limit prices are not moved; off-tick prices are refused.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol

from executor.risk import EXACT, order_price, quote_amount, text
from executor.signals import OrderType, Signal


@dataclass(frozen=True)
class Instrument:
    category: str
    symbol: str
    qty_step: Decimal  # linear: qtyStep; spot: basePrecision
    min_qty: Decimal
    max_qty: Decimal
    tick_size: Decimal
    max_mkt_qty: Decimal | None = None  # linear: maxMktOrderQty
    min_notional: Decimal | None = None  # linear: minNotionalValue; spot: minOrderAmt
    max_notional: Decimal | None = None  # spot: maxOrderAmt
    quote_step: Decimal | None = None  # spot: quotePrecision
    min_price: Decimal | None = None
    max_price: Decimal | None = None

    @classmethod
    def from_row(cls, category: str, row: Mapping[str, Any]) -> Instrument:
        """One ``result.list`` row; ValueError when a required field is missing or bad."""
        lot = _section(row, "lotSizeFilter")
        prices = _section(row, "priceFilter")
        spot = category == "spot"
        return cls(
            category=category,
            symbol=str(row.get("symbol", "")),
            qty_step=_required(lot, "basePrecision" if spot else "qtyStep"),
            min_qty=_required(lot, "minOrderQty"),
            max_qty=_required(lot, "maxOrderQty"),
            tick_size=_required(prices, "tickSize"),
            # Spot rows have carried "maxMarketOrderQty" on the live venue.
            max_mkt_qty=_optional(lot, "maxMarketOrderQty" if spot else "maxMktOrderQty"),
            min_notional=_optional(lot, "minOrderAmt" if spot else "minNotionalValue"),
            max_notional=_optional(lot, "maxOrderAmt") if spot else None,
            quote_step=_optional(lot, "quotePrecision") if spot else None,
            min_price=_optional(prices, "minPrice"),
            max_price=_optional(prices, "maxPrice"),
        )


def _section(row: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    section = row.get(name)
    if not isinstance(section, Mapping):
        raise ValueError(f"instrument row has no {name}")
    return section


def _optional(section: Mapping[str, Any], name: str) -> Decimal | None:
    raw = section.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = Decimal(str(raw))
    except InvalidOperation:
        raise ValueError(f"instrument {name} is not a decimal: {raw!r}") from None
    if not value.is_finite() or value < 0:
        raise ValueError(f"instrument {name} is not a usable decimal: {raw!r}")
    return value


def _required(section: Mapping[str, Any], name: str) -> Decimal:
    value = _optional(section, name)
    if value is None:
        raise ValueError(f"instrument row has no {name}")
    return value


@dataclass(frozen=True)
class Fitted:
    qty: Decimal
    changed: bool


@dataclass(frozen=True)
class Refusal:
    reason: str


def round_down(qty: Decimal, step: Decimal) -> Decimal:
    """``qty`` down to a whole number of ``step``s, as plain digits (no exponent)."""
    if step <= 0:
        return Decimal(text(qty))
    return Decimal(text(EXACT.multiply(EXACT.divide_int(qty, step), step)))


def fit(signal: Signal, instrument: Instrument, price: Decimal | None) -> Fitted | Refusal:
    """Round the signal's qty down to the instrument and check every venue bound.

    ``price`` is the last traded price, used for a market order's notional;
    the notional check is skipped only when no price is known at all.
    """
    symbol = instrument.symbol or signal.symbol
    if signal.order_type is OrderType.LIMIT:
        reason = _price_reason(signal.price, instrument, symbol)
        if reason is not None:
            return Refusal(reason)
    if quote_amount(signal):
        return _fit_amount(signal.qty, instrument, symbol)
    qty = round_down(signal.qty, instrument.qty_step)
    # A minimum below one step still means one step: rounding to zero is no order.
    floor = max(instrument.min_qty, instrument.qty_step)
    if qty < floor:
        return Refusal(_below(signal.qty, qty, floor, instrument.qty_step, symbol))
    mkt_cap = instrument.max_mkt_qty
    if signal.order_type is OrderType.MARKET and mkt_cap is not None and qty > mkt_cap:
        return Refusal(f"qty {text(qty)} above market maximum {text(mkt_cap)} for {symbol}")
    if qty > instrument.max_qty:
        return Refusal(f"qty {text(qty)} above maximum {text(instrument.max_qty)} for {symbol}")
    at = order_price(signal, price)
    if at is not None:
        reason = _notional_reason(EXACT.multiply(qty, at), instrument, symbol)
        if reason is not None:
            return Refusal(reason)
    return Fitted(qty=qty, changed=qty != signal.qty)


def _below(asked: Decimal, qty: Decimal, floor: Decimal, step: Decimal, symbol: str) -> str:
    if asked < floor:
        return f"qty {text(asked)} below minimum {text(floor)} for {symbol}"
    return (
        f"qty {text(asked)} rounds down to {text(qty)} (step {text(step)}),"
        f" below minimum {text(floor)} for {symbol}"
    )


def _fit_amount(amount: Decimal, instrument: Instrument, symbol: str) -> Fitted | Refusal:
    # A spot market order in quoteCoin: qty is money, bounded by the amount rules.
    step = instrument.quote_step
    qty = round_down(amount, step) if step is not None else Decimal(text(amount))
    if qty == 0:
        return Refusal(f"quote amount {text(amount)} rounds down to 0 for {symbol}")
    reason = _notional_reason(qty, instrument, symbol)
    if reason is not None:
        return Refusal(reason)
    return Fitted(qty=qty, changed=qty != amount)


def _notional_reason(notional: Decimal, instrument: Instrument, symbol: str) -> str | None:
    floor, cap = instrument.min_notional, instrument.max_notional
    if floor is not None and notional < floor:
        return f"notional {text(notional)} below minimum {text(floor)} for {symbol}"
    if cap is not None and cap > 0 and notional > cap:
        return f"notional {text(notional)} above maximum {text(cap)} for {symbol}"
    return None


def _price_reason(price: Decimal | None, instrument: Instrument, symbol: str) -> str | None:
    if price is None:
        return f"limit order without a price for {symbol}"
    tick = instrument.tick_size
    if tick > 0 and EXACT.remainder(price, tick) != 0:
        return f"price {text(price)} not on tick {text(tick)} for {symbol}"
    if instrument.min_price is not None and price < instrument.min_price:
        return f"price {text(price)} below minimum {text(instrument.min_price)} for {symbol}"
    if instrument.max_price is not None and 0 < instrument.max_price < price:
        return f"price {text(price)} above maximum {text(instrument.max_price)} for {symbol}"
    return None


class PublicAnswer(Protocol):
    @property
    def ok(self) -> bool: ...

    @property
    def result(self) -> Mapping[str, Any]: ...


class PublicApi(Protocol):
    async def get(self, key: None, path: str, params: Mapping[str, Any]) -> PublicAnswer: ...


@dataclass
class _Entry:
    value: Any
    fresh_until: float


class MarketData:
    """Cached instruments (per category and symbol) and last prices.

    A failed fetch keeps serving what is cached, however old, and is not retried
    for ``retry_s``: during an outage every order would otherwise wait out an
    HTTP timeout first. "Not listed" is remembered for ``retry_s`` too.
    """

    def __init__(
        self,
        client: PublicApi,
        *,
        refresh_s: float = 3600.0,
        price_ttl_s: float = 5.0,
        retry_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._refresh_s = refresh_s
        self._price_ttl_s = price_ttl_s
        self._retry_s = retry_s
        self._clock = clock
        self._instruments: dict[tuple[str, str], _Entry] = {}
        self._prices: dict[tuple[str, str], _Entry] = {}
        self._locks: dict[tuple[str, str, str], asyncio.Lock] = {}

    async def instrument(self, category: str, symbol: str) -> Instrument | None:
        """The venue's rules for the symbol, or None when it is not listed (or unknown yet)."""
        value = await self._cached(
            self._instruments, "instruments-info", str(category), symbol, self._refresh_s
        )
        return value if isinstance(value, Instrument) else None

    async def last_price(self, category: str, symbol: str) -> Decimal | None:
        value = await self._cached(
            self._prices, "tickers", str(category), symbol, self._price_ttl_s
        )
        return value if isinstance(value, Decimal) else None

    async def _cached(
        self,
        cache: dict[tuple[str, str], _Entry],
        what: str,
        category: str,
        symbol: str,
        ttl: float,
    ) -> Any:
        key = (category, symbol)
        entry = cache.get(key)
        if entry is not None and self._clock() < entry.fresh_until:
            return entry.value
        # One fetch per key at a time: a burst of signals for a new symbol asks once.
        lock = self._locks.setdefault((what, category, symbol), asyncio.Lock())
        async with lock:
            entry = cache.get(key)
            if entry is not None and self._clock() < entry.fresh_until:
                return entry.value
            answered, value = await self._fetch(what, category, symbol)
            now = self._clock()
            if answered:
                cache[key] = _Entry(value, now + (ttl if value is not None else self._retry_s))
            else:
                stale = entry.value if entry is not None else None
                cache[key] = _Entry(stale, now + self._retry_s)
            return cache[key].value

    async def _fetch(self, what: str, category: str, symbol: str) -> tuple[bool, Any]:
        """(answered, value): value None with answered True means "not listed"."""
        params = {"category": category, "symbol": symbol}
        answer = await self._client.get(None, f"/v5/market/{what}", params)
        rows = answer.result.get("list") if answer.ok else None
        if not isinstance(rows, list):
            return False, None
        row = next((r for r in rows if isinstance(r, Mapping) and r.get("symbol") == symbol), None)
        if row is None:
            return True, None
        try:
            if what == "tickers":
                price = Decimal(str(row.get("lastPrice", "")))
                return (True, price) if price.is_finite() and price > 0 else (False, None)
            return True, Instrument.from_row(category, row)
        except (ValueError, InvalidOperation):
            return False, None
