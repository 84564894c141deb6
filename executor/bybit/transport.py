"""The one seam between the Bybit client and the network: a ``Sender``.

A sender moves signed bytes and hands back status, body and headers, nothing
more: layered over aiohttp, httpx's Request/Response objects cost more CPU
per order than aiohttp's own work (16% of the daemon's busy CPU against 9%
in a profile at high throughput). ``AiohttpSender`` is the daemon's;
``HttpxSender`` wraps an ``httpx.AsyncClient``, so tests keep
``httpx.MockTransport`` and tools keep httpx.

Errors are mapped by what they say about the request, because the submitter
decides from that whether a resend is safe: a failure to connect (refused,
DNS, connect or pool timeout) means nothing left (``NotSent``); anything
after that, a timeout, a reset or a closed keep-alive connection, may have
reached the exchange (``NoAnswer``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import aiohttp
import httpx
from yarl import URL


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    content: bytes
    headers: Mapping[str, str]  # case-insensitive


class TransportError(Exception):
    """No HTTP answer; the subclass says whether the request may have left."""


class NotSent(TransportError):
    """Nothing left: resending cannot place a second order."""


class NoAnswer(TransportError):
    """The request may have reached the exchange: look it up before any resend."""


class Sender(Protocol):
    async def request(
        self, method: str, url: str, content: bytes, headers: Mapping[str, str]
    ) -> Response: ...

    async def aclose(self) -> None: ...


def _describe(exc: BaseException) -> str:
    # Type and message only: a signature lives in the headers, never in the text.
    text = str(exc)
    return f"{type(exc).__name__}: {text}"[:200] if text else type(exc).__name__


class AiohttpSender:
    """aiohttp's connection pool, asked for as little per request as it allows."""

    def __init__(
        self,
        *,
        timeout_s: float,
        connect_timeout_s: float = 5.0,
        max_connections: int = 64,
        keepalive_s: float = 30.0,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self._timeout = aiohttp.ClientTimeout(total=timeout_s, sock_connect=connect_timeout_s)
        self._limit = max_connections
        self._keepalive_s = keepalive_s
        self._headers = dict(headers or {})
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        # Made on first use: a session belongs to the loop that runs it.
        connector = aiohttp.TCPConnector(limit=self._limit, keepalive_timeout=self._keepalive_s)
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=self._timeout,
            headers=self._headers,
            skip_auto_headers=("User-Agent",),
        )
        return self._session

    async def request(
        self, method: str, url: str, content: bytes, headers: Mapping[str, str]
    ) -> Response:
        session = self._session
        if session is None or session.closed:
            session = self._open()
        try:
            # encoded=True: the query goes out exactly as it was signed, never re-quoted.
            async with session.request(
                method,
                URL(url, encoded=True),
                data=content or None,
                headers=headers,
                allow_redirects=False,
            ) as response:
                return Response(response.status, await response.read(), response.headers)
        except (aiohttp.ConnectionTimeoutError, aiohttp.ClientConnectorError) as exc:
            raise NotSent(_describe(exc)) from exc
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise NoAnswer(_describe(exc)) from exc

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


class HttpxSender:
    """An ``httpx.AsyncClient`` (its own transport or a ``MockTransport``) as a sender."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self._client = client

    async def request(
        self, method: str, url: str, content: bytes, headers: Mapping[str, str]
    ) -> Response:
        try:
            response = await self._client.request(method, url, content=content, headers=headers)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise NotSent(_describe(exc)) from exc
        except httpx.HTTPError as exc:
            raise NoAnswer(_describe(exc)) from exc
        return Response(response.status_code, response.content, response.headers)

    async def aclose(self) -> None:
        await self._client.aclose()
