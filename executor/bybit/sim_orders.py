"""Order parameters, order records and the per-account order book of the simulator."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from executor.bybit.sim_instruments import (
    CATEGORIES,
    Instrument,
    Rejection,
    check_linear,
    check_spot,
)

LINK_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,36}")
DECIMAL_RE = re.compile(r"\d+(\.\d+)?")
TIME_IN_FORCE = frozenset({"GTC", "IOC", "FOK", "PostOnly", "RPI"})
ILLEGAL_CATEGORY: Rejection = (10001, "Illegal category")


@dataclass(frozen=True, slots=True)
class OrderRequest:
    """An order that passed every parameter and instrument rule."""

    category: str
    symbol: str
    side: str
    order_type: str
    qty: str
    price: str
    time_in_force: str
    order_link_id: str
    reduce_only: bool
    position_idx: int
    market_unit: str
    fill_price: Decimal


@dataclass(slots=True)
class SimOrder:
    order_id: str
    order_link_id: str
    user_id: int
    api_key: str
    category: str
    symbol: str
    side: str
    order_type: str
    qty: str
    price: str
    time_in_force: str
    created_ms: int
    received_ns: int
    reduce_only: bool
    position_idx: int
    market_unit: str
    order_status: str
    # The ticker price when the order arrived: a market order fills at it.
    last_price: str
    seq: int = 0
    batch: bool = False  # came in a create-batch request (its own rate budget)

    def to_json(self) -> dict[str, Any]:
        """The admin API's record: Bybit's field names plus who sent it and when it arrived."""
        return {
            "orderId": self.order_id,
            "orderLinkId": self.order_link_id,
            "userId": self.user_id,
            "apiKey": self.api_key,
            "category": self.category,
            "symbol": self.symbol,
            "side": self.side,
            "orderType": self.order_type,
            "qty": self.qty,
            "price": self.price,
            "timeInForce": self.time_in_force,
            "createdTime": self.created_ms,
            "received_ns": self.received_ns,
            "batch": self.batch,
            "reduceOnly": self.reduce_only,
            "positionIdx": self.position_idx,
            "orderStatus": self.order_status,
        }

    def view(self) -> dict[str, Any]:
        """The order as `GET /v5/order/realtime` and `/history` list it."""
        filled = self.order_status == "Filled"
        qty = Decimal(self.qty)
        value = qty * Decimal(self.last_price) if filled else Decimal(0)
        return {
            "orderId": self.order_id,
            "orderLinkId": self.order_link_id,
            "blockTradeId": "",
            "symbol": self.symbol,
            "price": self.price or "0",
            "qty": self.qty,
            "side": self.side,
            "isLeverage": "",
            "positionIdx": self.position_idx,
            "orderStatus": self.order_status,
            "createType": "CreateByUser",
            "cancelType": "UNKNOWN",
            "rejectReason": "EC_NoError",
            "avgPrice": self.last_price if filled else "",
            "leavesQty": "0" if filled else self.qty,
            "leavesValue": "0" if filled else str(qty * Decimal(self.price or "0")),
            "cumExecQty": self.qty if filled else "0",
            "cumExecValue": str(value),
            "cumExecFee": "0",
            "timeInForce": self.time_in_force,
            "orderType": self.order_type,
            "stopOrderType": "",
            "orderIv": "",
            "marketUnit": self.market_unit,
            "triggerPrice": "",
            "takeProfit": "",
            "stopLoss": "",
            "tpslMode": "",
            "tpLimitPrice": "",
            "slLimitPrice": "",
            "tpTriggerBy": "",
            "slTriggerBy": "",
            "triggerDirection": 0,
            "triggerBy": "",
            "lastPriceOnCreated": self.last_price,
            "reduceOnly": self.reduce_only,
            "closeOnTrigger": False,
            "placeType": "",
            "smpType": "None",
            "smpGroup": 0,
            "smpOrderId": "",
            "createdTime": str(self.created_ms),
            "updatedTime": str(self.created_ms),
        }


def _param_error(name: str) -> Rejection:
    return 10001, f"params error: {name} invalid"


def _decimal(value: object) -> Decimal | None:
    if isinstance(value, str) and DECIMAL_RE.fullmatch(value):
        number = Decimal(value)
        return number if number > 0 else None
    return None


def parse_order(
    params: Mapping[str, Any],
    category: object,
    instrument: Callable[[str, str], Instrument | None],
    last_price: Callable[[Instrument], Decimal],
) -> OrderRequest | Rejection:
    if not isinstance(category, str) or category not in CATEGORIES:
        return ILLEGAL_CATEGORY
    spot = category == "spot"
    symbol = params.get("symbol")
    inst = instrument(category, symbol) if isinstance(symbol, str) else None
    if inst is None:
        return (170121, "Invalid symbol.") if spot else (10001, "params error: symbol invalid")
    side = params.get("side")
    if side not in ("Buy", "Sell"):
        return _param_error("side")
    order_type = params.get("orderType")
    if order_type not in ("Market", "Limit"):
        return _param_error("orderType")
    raw_qty = params.get("qty")
    qty = _decimal(raw_qty)
    if qty is None:
        return _param_error("qty")
    raw_price = params.get("price")
    price: Decimal | None = None
    if order_type == "Limit":
        price = _decimal(raw_price)
        if price is None:
            return _param_error("price")
    tif = params.get("timeInForce", "GTC")
    if tif not in TIME_IN_FORCE:
        return _param_error("timeInForce")
    link = params.get("orderLinkId", "")
    if not isinstance(link, str) or (link and not LINK_ID_RE.fullmatch(link)):
        return _param_error("orderLinkId")
    unit = params.get("marketUnit", "")
    if unit not in ("", "baseCoin", "quoteCoin"):
        return _param_error("marketUnit")
    last = last_price(inst)
    if spot:
        rejection = check_spot(inst, str(side), order_type, qty, price, last, unit or None)
    else:
        rejection = check_linear(inst, order_type, qty, price, last)
    if rejection is not None:
        return rejection
    position_idx = params.get("positionIdx", 0)
    return OrderRequest(
        category=category,
        symbol=inst.symbol,
        side=str(side),
        order_type=order_type,
        qty=str(raw_qty),
        price=str(raw_price) if price is not None else "",
        # A market order never rests: Bybit reports it as IOC whatever was asked.
        time_in_force="IOC" if order_type == "Market" else str(tif),
        order_link_id=link,
        reduce_only=params.get("reduceOnly") is True,
        position_idx=position_idx if isinstance(position_idx, int) else 0,
        market_unit=str(unit),
        fill_price=last,
    )


@dataclass(slots=True)
class Account:
    """One user's orders; link ids are unique per category, whatever key placed them."""

    links: dict[tuple[str, str], SimOrder] = field(default_factory=dict)
    by_id: dict[str, SimOrder] = field(default_factory=dict)
    history: list[SimOrder] = field(default_factory=list)

    def has_link(self, category: str, link: str) -> bool:
        return bool(link) and (category, link) in self.links

    def add(self, order: SimOrder) -> None:
        order.seq = len(self.history) + 1
        self.history.append(order)
        self.by_id[order.order_id] = order
        if order.order_link_id:
            self.links[(order.category, order.order_link_id)] = order

    def find(
        self, category: str, order_id: str, link: str, *, recent: int | None
    ) -> list[SimOrder]:
        """Orders matching the filters; ``recent`` keeps only the newest N of the account."""
        if link:
            hit = self.links.get((category, link))
            found = [hit] if hit is not None else []
        elif order_id:
            hit = self.by_id.get(order_id)
            found = [hit] if hit is not None and hit.category == category else []
        else:
            found = [o for o in reversed(self.history) if o.category == category]
        if order_id:
            found = [o for o in found if o.order_id == order_id]
        if recent is not None:
            oldest_visible = len(self.history) - recent
            found = [o for o in found if o.seq > oldest_visible]
        return found


class OrderBook:
    """Every account's orders; ``orders`` keeps them all in arrival order."""

    def __init__(self) -> None:
        self.orders: list[SimOrder] = []
        self.accounts: dict[int, Account] = {}

    def record(
        self,
        parsed: OrderRequest,
        user_id: int,
        api_key: str,
        now_ms: int,
        received_ns: int,
        *,
        batch: bool = False,
    ) -> SimOrder | Rejection:
        account = self.accounts.get(user_id)
        if account is None:
            account = self.accounts[user_id] = Account()
        if account.has_link(parsed.category, parsed.order_link_id):
            if parsed.category == "spot":
                return 170141, "Duplicate clientOrderId"
            return 110072, "OrderLinkedID is duplicate"
        order = SimOrder(
            order_id=str(uuid.uuid4()),
            order_link_id=parsed.order_link_id,
            user_id=user_id,
            api_key=api_key,
            category=parsed.category,
            symbol=parsed.symbol,
            side=parsed.side,
            order_type=parsed.order_type,
            qty=parsed.qty,
            price=parsed.price,
            time_in_force=parsed.time_in_force,
            created_ms=now_ms,
            received_ns=received_ns,
            reduce_only=parsed.reduce_only,
            position_idx=parsed.position_idx,
            market_unit=parsed.market_unit,
            order_status="Filled" if parsed.order_type == "Market" else "New",
            last_price=str(parsed.fill_price),
            batch=batch,
        )
        account.add(order)
        self.orders.append(order)
        return order

    def find(
        self, user_id: int, category: str, order_id: str, link: str, *, recent: int | None
    ) -> list[SimOrder]:
        account = self.accounts.get(user_id)
        if account is None:
            return []
        return account.find(category, order_id, link, recent=recent)

    def clear(self) -> None:
        self.orders.clear()
        self.accounts.clear()
