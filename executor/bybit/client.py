"""Bybit V5 REST client over an injected ``httpx.AsyncClient``.

Signs the exact bytes it sends, keeps a clock offset measured against
``/v5/market/time``, and returns every answer as an ``Answer`` whose
``reply`` feeds the one classification in ``executor.outcome``. It never
raises for exchange or transport trouble: the caller decides from the verdict.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import httpx
import structlog
from pydantic import SecretStr

from executor.breaker import CircuitBreaker, health
from executor.bybit.signing import auth_headers, compact_json
from executor.observe import NO_OBSERVER, Observer
from executor.outcome import IP_BAN_CODES, Failure, Reply

log = structlog.get_logger("executor")

# Stay a little behind the server: Bybit refuses timestamps >= server + 1000 ms.
SAFETY_MARGIN_MS = 200


@dataclass(frozen=True)
class ApiKey:
    """One API credential. The secret never prints; ``fingerprint`` is safe to log."""

    name: str
    key: str
    secret: SecretStr = field(repr=False)

    @property
    def fingerprint(self) -> str:
        return f"{self.key[:4]}…{self.key[-2:]}" if len(self.key) > 8 else "…"


@dataclass(frozen=True)
class RateLimit:
    limit: int | None = None
    remaining: int | None = None
    reset_ms: int | None = None


@dataclass(frozen=True)
class Answer:
    reply: Reply
    ret_msg: str = ""
    result: Mapping[str, Any] = field(default_factory=dict)
    ext: Mapping[str, Any] = field(default_factory=dict)
    rate: RateLimit = field(default_factory=RateLimit)
    error: str = ""  # transport failure description, never containing secrets

    @property
    def ok(self) -> bool:
        return self.reply.ret_code == 0 and self.reply.failure is None


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


class BybitClient:
    def __init__(
        self,
        http: httpx.AsyncClient,
        base_url: str,
        *,
        recv_window_ms: int = 5000,
        wall_ms: Callable[[], float] = lambda: time.time() * 1000,
        clock: Callable[[], float] = time.monotonic,
        ban_s: float = 600.0,
        breaker: CircuitBreaker | None = None,
        observer: Observer = NO_OBSERVER,
    ) -> None:
        self._http = http
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
        return await self.post(key, "/v5/order/create", body)

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
        url = f"{self._base}{path}"
        headers = {"Content-Type": "application/json"} if method == "POST" else {}
        if method == "GET" and payload:
            url = f"{url}?{payload}"
        if key is not None:
            headers.update(
                auth_headers(
                    key.key,
                    key.secret.get_secret_value(),
                    self.timestamp_ms(),
                    self._recv_window,
                    payload,
                )
            )
        started = self._clock()
        try:
            response = await self._http.request(method, url, content=content, headers=headers)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            answer = Answer(Reply(failure=Failure.NOT_SENT), error=_describe(exc))
        except httpx.HTTPError as exc:
            answer = Answer(Reply(failure=Failure.NO_ANSWER), error=_describe(exc))
        else:
            answer = parse_answer(response.status_code, response.content, response.headers)
        elapsed = self._clock() - started
        self._observer.exchange_request(path, elapsed)
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
        if key is not None and self.breaker is not None:
            self.breaker.record_health(health(answer.reply))
        if answer.reply.status == 403 or answer.reply.ret_code in IP_BAN_CODES:
            self._note_ban(answer)
        return answer


def parse_answer(status: int, content: bytes, headers: Mapping[str, str]) -> Answer:
    rate = RateLimit(
        limit=_int(headers.get("X-Bapi-Limit")),
        remaining=_int(headers.get("X-Bapi-Limit-Status")),
        reset_ms=_int(headers.get("X-Bapi-Limit-Reset-Timestamp")),
    )
    try:
        envelope = json.loads(content) if content else None
    except ValueError:
        envelope = None
    if not isinstance(envelope, dict) or "retCode" not in envelope:
        text = content[:200].decode(errors="replace")
        return Answer(Reply(status=status), ret_msg=f"HTTP {status}: {text}", rate=rate)
    result = envelope.get("result")
    ext = envelope.get("retExtInfo")
    return Answer(
        Reply(status=status, ret_code=_int(str(envelope["retCode"]))),
        ret_msg=str(envelope.get("retMsg", "")),
        result=result if isinstance(result, dict) else {},
        ext=ext if isinstance(ext, dict) else {},
        rate=rate,
    )


def _describe(exc: httpx.HTTPError) -> str:
    # The request URL carries no secret (signatures are in headers), but keep
    # the text to the exception type and message only.
    return f"{type(exc).__name__}: {exc}"[:200]
