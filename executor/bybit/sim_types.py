"""Plain values the simulator passes around: config, request, answer, counters."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from executor.bybit.sim_faults import OrderLimit
from executor.bybit.sim_keys import DEMO_KEYS, SimKey

REALTIME_KEEP = 500

ORDER_CREATE = "/v5/order/create"
ORDER_CREATE_BATCH = "/v5/order/create-batch"
ORDER_REALTIME = "/v5/order/realtime"
ORDER_HISTORY = "/v5/order/history"
QUERY_API = "/v5/user/query-api"
ORDER_PATHS = frozenset({ORDER_CREATE, ORDER_CREATE_BATCH})


def wall_clock_ms() -> float:
    return time.time() * 1000.0


def envelope(now_ms: int, code: int, msg: str, result: Any, ext: Any) -> dict[str, Any]:
    return {"retCode": code, "retMsg": msg, "result": result, "retExtInfo": ext, "time": now_ms}


@dataclass
class SimConfig:
    """Every knob of the simulator; the run-time ones can be changed later via `set_faults`."""

    order_limit: OrderLimit = None
    error_rate: float = 0.0
    lose_rate: float = 0.0
    latency_ms: float = 0.0
    ip_ban: bool = False
    ip_limit: int | None = 600
    ip_window_ms: int = 5000
    # Bybit asks clients to stay away ten minutes after an IP-limit breach.
    ip_ban_ms: int = 600_000
    revoked: tuple[str, ...] = ()
    keys: tuple[SimKey, ...] = DEMO_KEYS
    extra_keys: tuple[SimKey, ...] = ()
    prices: Mapping[str, str] = field(default_factory=dict)
    seed: int | None = None
    clock_offset_ms: int = 0
    realtime_keep: int = REALTIME_KEEP
    access_log: bool = False
    # An idle keep-alive connection is closed after this long, as a load balancer does.
    idle_timeout_s: float = 75.0


@dataclass(frozen=True, slots=True)
class SimRequest:
    method: str
    path: str
    # The query exactly as it appeared in the URL, and the body bytes as sent: both are signed.
    query: str = ""
    body: bytes = b""
    api_key: str | None = None
    timestamp: str | None = None
    recv_window: str | None = None
    sign: str | None = None
    client_ip: str = "127.0.0.1"
    received_ns: int = 0


@dataclass(slots=True)
class Answer:
    status: int
    body: dict[str, Any] | str
    headers: dict[str, str] = field(default_factory=dict)
    ret_code: int | None = None
    content_type: str = "application/json"

    def encode(self) -> bytes:
        if isinstance(self.body, str):
            return self.body.encode()
        return json.dumps(self.body, separators=(",", ":")).encode()


@dataclass
class SimStats:
    requests: Counter[str] = field(default_factory=Counter)
    ret_codes: Counter[int] = field(default_factory=Counter)
    http_status: Counter[int] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    rate_limited: int = 0
    ip_limited: int = 0
    orders: int = 0  # orders asked for, alone or in a batch, whatever the answer
    peers: set[str] = field(default_factory=set)  # client address:port of each connection

    def sent(self, status: int) -> None:
        self.http_status[status] += 1

    def snapshot(self) -> dict[str, Any]:
        return {
            "requests": dict(self.requests),
            "ret_codes": {str(code): n for code, n in self.ret_codes.items()},
            "http_status": {str(code): n for code, n in self.http_status.items()},
            "rate_limited": self.rate_limited,
            "ip_limited": self.ip_limited,
            "orders": self.orders,
            "connections": len(self.peers),
            "faults": dict(self.faults),
            "faults_total": sum(self.faults.values()),
        }
