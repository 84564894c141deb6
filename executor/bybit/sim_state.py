"""Exchange state and rules of the Bybit V5 simulator.

Pure: no aiohttp. Wall time comes from ``clock`` (epoch ms) and arrival stamps
from ``monotonic_ns``, both injected, so unit tests step time instead of
sleeping. ``ExchangeState.dispatch`` turns one request into one answer; the
aiohttp layer only moves bytes and applies the transport-level faults.

A private request meets authentication (`sim_auth`, in Bybit's gateway order),
then the per-UID rate limit (10006), then the business rules.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal
from urllib.parse import parse_qsl

from executor.bybit.sim_auth import authenticate
from executor.bybit.sim_faults import GATEWAY_PAGES, IP_BAN_TEXT, FaultDice, FaultKnobs
from executor.bybit.sim_instruments import CATEGORIES, Rejection
from executor.bybit.sim_keys import (
    DEMO_KEYS,
    OTHER_ACCOUNT,
    PRIMARY,
    READ_ONLY,
    SECONDARY,
    WALLET,
    SimKey,
    query_api_view,
)
from executor.bybit.sim_limits import Admission, IpGuard, RollingWindow
from executor.bybit.sim_market import MarketData
from executor.bybit.sim_orders import ILLEGAL_CATEGORY, OrderBook, SimOrder, parse_order
from executor.bybit.sim_types import (
    ORDER_CREATE,
    ORDER_CREATE_BATCH,
    ORDER_HISTORY,
    ORDER_PATHS,
    ORDER_REALTIME,
    QUERY_API,
    Answer,
    SimConfig,
    SimRequest,
    SimStats,
    envelope,
    wall_clock_ms,
)

TOO_MANY_VISITS: Rejection = (10006, "Too many visits!")
MARKET_TIME = "/v5/market/time"
INSTRUMENTS_INFO = "/v5/market/instruments-info"
TICKERS = "/v5/market/tickers"

KNOBS_FROM_CONFIG = (
    "error_rate",
    "lose_rate",
    "latency_ms",
    "ip_ban",
    "order_limit",
    "ip_limit",
    "revoked",
    "clock_offset_ms",
)

Access = Literal["public", "read", "trade"]
Params = Mapping[str, Any]

__all__ = [
    "DEMO_KEYS",
    "OTHER_ACCOUNT",
    "PRIMARY",
    "READ_ONLY",
    "SECONDARY",
    "WALLET",
    "Answer",
    "ExchangeState",
    "SimConfig",
    "SimKey",
    "SimOrder",
    "SimRequest",
    "SimStats",
]


@dataclass(frozen=True, slots=True)
class _Route:
    method: str
    access: Access
    handler: Callable[[SimRequest, SimKey | None, Params], Answer]
    # The per-UID rate-limit budget the endpoint draws on.
    group: str = ""


def _category_key(category: object) -> str:
    return category if isinstance(category, str) else ""


class ExchangeState:
    def __init__(
        self,
        config: SimConfig | None = None,
        *,
        clock: Callable[[], float] = wall_clock_ms,
        monotonic_ns: Callable[[], int] = time.monotonic_ns,
    ) -> None:
        config = config or SimConfig()
        self.config = config
        self.clock = clock
        self.monotonic_ns = monotonic_ns
        self.keys: dict[str, SimKey] = {k.api_key: k for k in (*config.keys, *config.extra_keys)}
        self.market = MarketData()
        for symbol, price in config.prices.items():
            self.market.set_price(symbol, price)
        self.knobs = FaultKnobs()
        self.knobs.update({name: getattr(config, name) for name in KNOBS_FROM_CONFIG})
        self.dice = FaultDice(config.seed)
        self.ip_guard = IpGuard(config.ip_window_ms, config.ip_ban_ms)
        self.windows = RollingWindow(1000)
        self.book = OrderBook()
        # The book's own list: every accepted order, in arrival order.
        self.orders: list[SimOrder] = self.book.orders
        self.stats = SimStats()
        self.routes: dict[str, _Route] = {
            MARKET_TIME: _Route("GET", "public", self._market_time),
            INSTRUMENTS_INFO: _Route("GET", "public", self._instruments_info),
            TICKERS: _Route("GET", "public", self._tickers),
            ORDER_CREATE: _Route("POST", "trade", self._create, "create"),
            ORDER_CREATE_BATCH: _Route("POST", "trade", self._create_batch, "batch"),
            ORDER_REALTIME: _Route("GET", "read", self._order_query("realtime"), "realtime"),
            ORDER_HISTORY: _Route("GET", "read", self._order_query("history"), "history"),
            QUERY_API: _Route("GET", "read", self._query_api, "query-api"),
        }

    # ---- clock, keys, prices, knobs -------------------------------------------------

    def now_ms(self) -> int:
        return int(self.clock()) + self.knobs.clock_offset_ms

    def add_key(self, key: SimKey) -> None:
        self.keys[key.api_key] = key
        self.knobs.revoked.discard(key.api_key)

    def revoke(self, api_key: str) -> None:
        self.knobs.revoked.add(api_key)

    def restore(self, api_key: str) -> None:
        self.knobs.revoked.discard(api_key)

    def set_price(self, symbol: str, price: str | Decimal, category: str | None = None) -> None:
        self.market.set_price(symbol, price, category)

    def orders_as_dicts(self) -> list[dict[str, Any]]:
        """Every recorded order in arrival order, as `GET /sim/orders` lists them."""
        return [o.to_json() for o in self.orders]

    def faults(self) -> dict[str, Any]:
        return self.knobs.as_dict()

    def set_faults(self, **updates: Any) -> dict[str, Any]:
        """Change any knob of `FaultKnobs`; all are validated first. Returns every knob."""
        self.knobs.update(updates)
        return self.faults()

    def reset(self) -> None:
        """Forget orders, rate-limit windows, bans and counters; keys, prices and knobs stay."""
        self.book.clear()
        self.windows.clear()
        self.ip_guard.clear()
        self.stats = SimStats()

    # ---- transport-level faults (asked by the HTTP layer) ---------------------------

    def gate(self, path: str, client_ip: str) -> Answer | None:
        """What a request meets before the exchange proper sees it: bans and gateway errors."""
        self.stats.requests[path] += 1
        if self.knobs.ip_ban:
            self.stats.faults["ip_ban"] += 1
            return Answer(403, IP_BAN_TEXT, content_type="text/plain")
        if not self.ip_guard.admit(client_ip, self.now_ms(), self.knobs.ip_limit):
            self.stats.ip_limited += 1
            return Answer(403, IP_BAN_TEXT, content_type="text/plain")
        status = self.dice.gateway_error(self.knobs.error_rate)
        if self.knobs.fail_next > 0:
            self.knobs.fail_next -= 1
            status = 503
        if status is not None:
            self.stats.faults["error"] += 1
            return Answer(status, GATEWAY_PAGES[status], content_type="text/html")
        return None

    def draw_lose(self, path: str) -> bool:
        if path in ORDER_PATHS and self.dice.lose(self.knobs.lose_rate):
            self.stats.faults["lose"] += 1
            return True
        return False

    # ---- the exchange proper ---------------------------------------------------------

    def dispatch(self, req: SimRequest) -> Answer:
        route = self.routes.get(req.path)
        if route is None or route.method != req.method:
            return Answer(404, "Not Found", content_type="text/plain")
        if route.access == "public":
            answer = route.handler(req, None, dict(parse_qsl(req.query, keep_blank_values=True)))
        else:
            params = self._params(req)
            category = params.get("category") if params is not None else None
            key = self.authenticate(req, route.access, category)
            if isinstance(key, Answer):
                answer = key
            elif params is None:
                answer = self._error(
                    10001,
                    "params error: request body is not a JSON object",
                    self._peek(key, route.group, ""),
                )
            else:
                answer = route.handler(req, key, params)
        if answer.ret_code is not None:
            self.stats.ret_codes[answer.ret_code] += 1
        return answer

    def authenticate(self, req: SimRequest, access: Access, category: object) -> SimKey | Answer:
        checked = authenticate(
            req,
            keys=self.keys,
            revoked=self.knobs.revoked,
            now_ms=self.now_ms(),
            trade_category=_category_key(category) if access == "trade" else None,
        )
        return self._error(*checked) if isinstance(checked, tuple) else checked

    def _params(self, req: SimRequest) -> dict[str, Any] | None:
        if req.method != "POST":
            return dict(parse_qsl(req.query, keep_blank_values=True))
        try:
            params = json.loads(req.body) if req.body else {}
        except ValueError:
            return None
        return params if isinstance(params, dict) else None

    def _ok(self, result: Any, headers: dict[str, str] | None = None) -> Answer:
        return Answer(200, envelope(self.now_ms(), 0, "OK", result, {}), headers or {}, 0)

    def _result(self, result: dict[str, Any] | Rejection) -> Answer:
        return self._error(*result) if isinstance(result, tuple) else self._ok(result)

    def _error(self, code: int, msg: str, headers: dict[str, str] | None = None) -> Answer:
        return Answer(200, envelope(self.now_ms(), code, msg, {}, {}), headers or {}, code)

    def _admit(self, key: SimKey, group: str, category: str, units: int = 1) -> Admission:
        limit: int | None
        if group in ("create", "batch"):
            order_limit = self.knobs.order_limit
            if order_limit == "unlimited":
                limit = None
            elif order_limit is not None:
                limit = order_limit
            else:
                limit = 20 if category == "spot" else 10
        else:
            limit = 10 if group == "query-api" else 50
        return self.windows.acquire((key.user_id, group, category), limit, self.now_ms(), units)

    def _peek(self, key: SimKey, group: str, category: str) -> dict[str, str]:
        """Limit headers without spending budget, for answers refused before the limiter."""
        return self._admit(key, group, category, units=0).headers()

    def _too_many(self, admission: Admission) -> Answer:
        self.stats.rate_limited += 1
        return self._error(*TOO_MANY_VISITS, headers=admission.headers())

    def _place(
        self, key: SimKey, params: Params, category: object, received_ns: int, batch: bool = False
    ) -> SimOrder | Rejection:
        parsed = parse_order(params, category, self.market.instrument, self.market.last_price)
        if isinstance(parsed, tuple):
            return parsed
        now_ms = self.now_ms()
        return self.book.record(parsed, key.user_id, key.api_key, now_ms, received_ns, batch=batch)

    # ---- endpoints -------------------------------------------------------------------

    def _market_time(self, req: SimRequest, key: SimKey | None, params: Params) -> Answer:
        now_ns = int(self.clock() * 1_000_000) + self.knobs.clock_offset_ms * 1_000_000
        return self._ok({"timeSecond": str(now_ns // 1_000_000_000), "timeNano": str(now_ns)})

    def _instruments_info(self, req: SimRequest, key: SimKey | None, params: Params) -> Answer:
        return self._result(self.market.instruments_info(params))

    def _tickers(self, req: SimRequest, key: SimKey | None, params: Params) -> Answer:
        return self._result(self.market.tickers(params))

    def _create(self, req: SimRequest, key: SimKey | None, params: Params) -> Answer:
        assert key is not None
        self.stats.orders += 1
        category = params.get("category")
        admission = self._admit(key, "create", _category_key(category))
        if not admission.granted:
            return self._too_many(admission)
        placed = self._place(key, params, category, req.received_ns)
        if isinstance(placed, tuple):
            return self._error(*placed, headers=admission.headers())
        result = {"orderId": placed.order_id, "orderLinkId": placed.order_link_id}
        return self._ok(result, admission.headers())

    def _create_batch(self, req: SimRequest, key: SimKey | None, params: Params) -> Answer:
        assert key is not None
        category = params.get("category")
        peek = self._peek(key, "batch", _category_key(category))
        if not isinstance(category, str) or category not in CATEGORIES:
            return self._error(*ILLEGAL_CATEGORY, peek)
        items = params.get("request")
        if not isinstance(items, list) or not items or not all(isinstance(i, dict) for i in items):
            return self._error(10001, "params error: request invalid", peek)
        self.stats.orders += len(items)
        cap = 10 if category == "spot" else 20
        if len(items) > cap:
            return self._error(10001, f"params error: batch size exceeds the limit of {cap}", peek)
        admission = self._admit(key, "batch", category, units=len(items))
        if not admission.granted:
            return self._too_many(admission)
        results: list[dict[str, Any]] = []
        codes: list[dict[str, Any]] = []
        for index, item in enumerate(items):
            placed: SimOrder | Rejection
            if index < admission.granted:
                placed = self._place(key, item, category, req.received_ns, batch=True)
            else:
                self.stats.rate_limited += 1
                placed = TOO_MANY_VISITS
            if isinstance(placed, tuple):
                link = item.get("orderLinkId")
                symbol = item.get("symbol")
                results.append(
                    {
                        "category": category,
                        "symbol": symbol if isinstance(symbol, str) else "",
                        "orderId": "",
                        "orderLinkId": link if isinstance(link, str) else "",
                        "createAt": "",
                    }
                )
                codes.append({"code": placed[0], "msg": placed[1]})
            else:
                results.append(
                    {
                        "category": category,
                        "symbol": placed.symbol,
                        "orderId": placed.order_id,
                        "orderLinkId": placed.order_link_id,
                        "createAt": str(placed.created_ms),
                    }
                )
                codes.append({"code": 0, "msg": "OK"})
        body = envelope(self.now_ms(), 0, "OK", {"list": results}, {"list": codes})
        return Answer(200, body, admission.headers(), 0)

    def _order_query(
        self, group: Literal["realtime", "history"]
    ) -> Callable[[SimRequest, SimKey | None, Params], Answer]:
        def handler(req: SimRequest, key: SimKey | None, params: Params) -> Answer:
            assert key is not None
            category = params.get("category")
            if not isinstance(category, str) or category not in CATEGORIES:
                return self._error(
                    *ILLEGAL_CATEGORY, self._peek(key, group, _category_key(category))
                )
            admission = self._admit(key, group, category)
            if not admission.granted:
                return self._too_many(admission)
            limit_raw = str(params.get("limit") or "20")
            limit = min(50, max(1, int(limit_raw))) if limit_raw.isdigit() else 20
            found = self.book.find(
                key.user_id,
                category,
                str(params.get("orderId") or ""),
                str(params.get("orderLinkId") or ""),
                recent=self.config.realtime_keep if group == "realtime" else None,
            )
            symbol = params.get("symbol")
            if symbol:
                found = [o for o in found if o.symbol == symbol]
            result = {
                "category": category,
                "list": [o.view() for o in found[:limit]],
                "nextPageCursor": "",
            }
            return self._ok(result, admission.headers())

        return handler

    def _query_api(self, req: SimRequest, key: SimKey | None, params: Params) -> Answer:
        assert key is not None
        admission = self._admit(key, "query-api", "")
        if not admission.granted:
            return self._too_many(admission)
        return self._ok(query_api_view(key, self.now_ms()), admission.headers())
