"""Public market data of the simulator: the instrument table and settable ticker prices."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from executor.bybit.sim_instruments import (
    BUILTIN_INSTRUMENTS,
    BUILTIN_PRICES,
    CATEGORIES,
    Instrument,
    Rejection,
)
from executor.bybit.sim_orders import ILLEGAL_CATEGORY


class MarketData:
    def __init__(self, instruments: tuple[Instrument, ...] = BUILTIN_INSTRUMENTS) -> None:
        self.instruments = {(i.category, i.symbol): i for i in instruments}
        self.prices = {key: BUILTIN_PRICES[key[1]] for key in self.instruments}

    def instrument(self, category: str, symbol: str) -> Instrument | None:
        return self.instruments.get((category, symbol))

    def last_price(self, inst: Instrument) -> Decimal:
        return self.prices[(inst.category, inst.symbol)]

    def set_price(self, symbol: str, price: str | Decimal, category: str | None = None) -> None:
        """Set the ticker of `symbol` in `category`, or in every category that lists it."""
        try:
            value = Decimal(price)
        except InvalidOperation as exc:
            raise ValueError(f"price must be a decimal, got {price!r}") from exc
        if not value.is_finite() or value <= 0:
            raise ValueError(f"price must be a positive decimal, got {price!r}")
        matched = [k for k in self.instruments if k[1] == symbol and category in (None, k[0])]
        if not matched:
            raise KeyError(f"unknown instrument {category or '*'}/{symbol}")
        for key in matched:
            self.prices[key] = value

    def _rows(self, params: Mapping[str, Any]) -> list[Instrument] | Rejection:
        category = params.get("category")
        if category not in CATEGORIES:
            return ILLEGAL_CATEGORY
        symbol = params.get("symbol") or None
        return [
            inst
            for (cat, sym), inst in self.instruments.items()
            if cat == category and symbol in (None, sym)
        ]

    def instruments_info(self, params: Mapping[str, Any]) -> dict[str, Any] | Rejection:
        rows = self._rows(params)
        if isinstance(rows, tuple):
            return rows
        listed = [inst.info() for inst in rows]
        return {"category": params["category"], "list": listed, "nextPageCursor": ""}

    def tickers(self, params: Mapping[str, Any]) -> dict[str, Any] | Rejection:
        rows = self._rows(params)
        if isinstance(rows, tuple):
            return rows
        listed = [inst.ticker(self.last_price(inst)) for inst in rows]
        return {"category": params["category"], "list": listed}
