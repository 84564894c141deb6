"""Bybit V5 REST client over an injected ``Sender`` (or an ``httpx.AsyncClient``).

Signs the exact bytes it sends, keeps a clock offset measured against
``/v5/market/time``, and returns every answer as an ``Answer`` whose
``reply`` feeds the one classification in ``executor.outcome``. It never
raises for exchange or transport trouble: the caller decides from the verdict.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import httpx
import structlog
from pydantic import SecretStr

from executor.breaker import CircuitBreaker, health
from executor.bybit.answer import (
    Answer,
    BatchAnswer,
    BatchItem,
    RateLimit,
    batch_items,
    parse_answer,
)
from executor.bybit.signing import auth_headers, compact_json
from executor.bybit.transport import HttpxSender, NoAnswer, NotSent, Sender
from executor.logs import debug_enabled
from executor.observe import NO_OBSERVER, Observer
from executor.outcome import IP_BAN_CODES, Failure, Reply

__all__ = [
    "SAFETY_MARGIN_MS",
    "Answer",
    "ApiKey",
    "BatchAnswer",
    "BatchItem",
    "BybitClient",
    "RateLimit",
    "parse_answer",
]

log = structlog.get_logger("executor")

# Stay a little behind the server: Bybit refuses timestamps >= server + 1000 ms.
SAFETY_MARGIN_MS = 200
ORDER_CREATE = "/v5/order/create"
ORDER_CREATE_BATCH = "/v5/order/create-batch"
_JSON_HEADERS: Mapping[str, str] = {"Content-Type": "application/json"}
_NO_HEADERS: Mapping[str, str] = {}


@dataclass(frozen=True)
class ApiKey:
    """One API credential. The secret never prints; ``fingerprint`` is safe to log."""

    name: str
    key: str
    secret: SecretStr = field(repr=False)

    @property
    def fingerprint(self) -> str:
        return f"{self.key[:4]}…{self.key[-2:]}" if len(self.key) > 8 else "…"


class BybitClient:
    def __init__(
        self,
        http: Sender | httpx.AsyncClient,
        base_url: str,
        *,
        recv_window_ms: int = 5000,
        wall_ms: Callable[[], float] = lambda: time.time() * 1000,
        clock: Callable[[], float] = time.monotonic,
        ban_s: float = 600.0,
        breaker: CircuitBreaker | None = None,
        observer: Observer = NO_OBSERVER,
    ) -> None:
        # Never closed here: whoever made the client or sender closes it.
        self._http: Sender = HttpxSender(http) if isinstance(http, httpx.AsyncClient) else http
        self._observer = observer
        self._base = base_url.rstrip("/")
        self._recv_window = recv_window_ms
        self._wall_ms = wall_ms
        self._clock = clock
        self._ban_s = ban_s
        self.breaker = breaker
        self.offset_ms = 0.0
        self.banned_until = float("-inf")
        self.ban_reason = ""
        self._last_sent = clock()

    def idle_s(self) -> float:
        """Seconds since the last request was sent (or since the client was made)."""
        return self._clock() - self._last_sent

    def ban_remaining(self) -> float:
        """Seconds left of an IP ban during which nothing is sent (0 when none)."""
        return max(0.0, self.banned_until - self._clock())

    def pause_s(self) -> float:
        """How long before a request could go out: IP ban, then the breaker."""
        breaker_wait = self.breaker.retry_after() if self.breaker is not None else 0.0
        return max(self.ban_remaining(), breaker_wait)

    def _note_ban(self, answer: Answer) -> None:
        self.banned_until = self._clock() + self._ban_s
        self.ban_reason = answer.ret_msg[:200]
        self._observer.ip_ban()
        log.error(
            "exchange.ip_ban",
            reason=self.ban_reason,
            pause_s=self._ban_s,
            http_status=answer.reply.status,
            ret_code=answer.reply.ret_code,
        )

    def timestamp_ms(self) -> int:
        return int(self._wall_ms() + self.offset_ms) - SAFETY_MARGIN_MS

    async def sync_time(self) -> float:
        """Measure the offset to the server clock (midpoint of the round trip)."""
        before = self._wall_ms()
        answer = await self._send("GET", "/v5/market/time", None, b"", "")
        after = self._wall_ms()
        nano = answer.result.get("timeNano") if answer.ok else None
        if nano is None:
            raise ConnectionError(f"cannot read server time: {answer.ret_msg or answer.error}")
        self.offset_ms = int(nano) / 1e6 - (before + after) / 2
        return self.offset_ms

    def resync_from(self, server_ms: int) -> None:
        """Adopt the server time reported in a 10002 rejection."""
        self.offset_ms = server_ms - self._wall_ms()

    async def create_order(self, key: ApiKey, body: Mapping[str, Any]) -> Answer:
        return await self.post(key, ORDER_CREATE, body)

    async def create_batch(
        self, key: ApiKey, category: str, bodies: Sequence[Mapping[str, Any]]
    ) -> BatchAnswer:
        """Place several orders in one request; ``items`` says what became of each.

        Batches draw on their own rate budget, one unit per order. The size
        cap (20, spot 10; the docs disagree) is the exchange's to enforce: an
        oversized batch comes back 10001 for every order.
        """
        request = [_batch_order(body, category) for body in bodies]
        answer = await self.post(
            key, ORDER_CREATE_BATCH, {"category": category, "request": request}
        )
        return BatchAnswer(answer, batch_items(answer, bodies))

    async def get_order(self, key: ApiKey, category: str, order_link_id: str) -> Answer:
        """Find an order by orderLinkId: realtime first, then history.

        Realtime only keeps recent orders, so "not there" is only believed
        after history says the same.
        """
        params = {"category": category, "orderLinkId": order_link_id}
        answer = await self.get(key, "/v5/order/realtime", params)
        if not answer.ok or answer.result.get("list"):
            return answer
        return await self.get(key, "/v5/order/history", params)

    async def get(self, key: ApiKey | None, path: str, params: Mapping[str, Any]) -> Answer:
        query = urlencode(params)
        return await self._send("GET", path, key, b"", query)

    async def post(self, key: ApiKey, path: str, body: Mapping[str, Any]) -> Answer:
        content = compact_json(body)
        return await self._send("POST", path, key, content, content.decode())

    async def _send(
        self, method: str, path: str, key: ApiKey | None, content: bytes, payload: str
    ) -> Answer:
        if self.ban_remaining() > 0:
            # Banned: not one request until the window passes, or the ban gets longer.
            return Answer(Reply(failure=Failure.HELD), error=f"IP ban in force: {self.ban_reason}")
        if self.breaker is not None:
            # Signed requests may be the half-open probe; public ones (market
            # data) wait until the breaker has closed again.
            allowed = self.breaker.allow() if key is not None else self.breaker.closed
            if not allowed:
                return Answer(Reply(failure=Failure.HELD), error="circuit breaker open")
        url = self._base + path
        if method == "GET" and payload:
            url = f"{url}?{payload}"
        headers: Mapping[str, str]
        if key is not None:
            signed = auth_headers(
                key.key,
                key.secret.get_secret_value(),
                self.timestamp_ms(),
                self._recv_window,
                payload,
            )
            if method == "POST":
                signed["Content-Type"] = "application/json"
            headers = signed
        else:
            headers = _JSON_HEADERS if method == "POST" else _NO_HEADERS
        started = self._last_sent = self._clock()
        try:
            response = await self._http.request(method, url, content, headers)
        except NotSent as exc:
            answer = Answer(Reply(failure=Failure.NOT_SENT), error=str(exc))
        except NoAnswer as exc:
            answer = Answer(Reply(failure=Failure.NO_ANSWER), error=str(exc))
        else:
            answer = parse_answer(response.status, response.content, response.headers)
        elapsed = self._clock() - started
        self._observer.exchange_request(path, elapsed)
        if debug_enabled():
            _log_request(method, path, key, answer, elapsed)
        if key is not None and self.breaker is not None:
            self.breaker.record_health(health(answer.reply))
        if answer.reply.status == 403 or answer.reply.ret_code in IP_BAN_CODES:
            self._note_ban(answer)
        return answer


def _log_request(
    method: str, path: str, key: ApiKey | None, answer: Answer, elapsed: float
) -> None:
    log.debug(
        "exchange.request",
        method=method,
        path=path,
        key=key.name if key else None,
        fingerprint=key.fingerprint if key else None,
        http_status=answer.reply.status,
        ret_code=answer.reply.ret_code,
        failure=answer.reply.failure.value if answer.reply.failure else None,
        error=answer.error or None,
        limit_status=answer.rate.remaining,
        elapsed_ms=round(elapsed * 1000, 1),
    )


def _batch_order(body: Mapping[str, Any], category: str) -> dict[str, Any]:
    """An order as an item of a batch: the category is the batch's, stated once."""
    named = body.get("category", category)
    if named != category:
        raise ValueError(f"an order for category {named!r} in a {category!r} batch")
    return {name: value for name, value in body.items() if name != "category"}
