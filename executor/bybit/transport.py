"""An aiohttp connection pool under the httpx API.

httpx stays the interface (tests swap in ``httpx.MockTransport``), aiohttp
does the I/O: on this kind of machine it costs about a third of the CPU per
request of httpx's own transport (see docs/benchmarks.md).

Errors are mapped by what they say about the request, because the submitter
decides from that whether a resend is safe: a failure to connect means
nothing left (``httpx.ConnectError`` / ``ConnectTimeout``); anything after
that, a timeout, a reset or a closed keep-alive connection, may have
reached the exchange (``httpx.ReadError`` / ``ReadTimeout``).
"""

from __future__ import annotations

import aiohttp
import httpx


class AiohttpTransport(httpx.AsyncBaseTransport):
    def __init__(
        self, *, timeout_s: float, connect_timeout_s: float = 5.0, max_connections: int = 64
    ) -> None:
        self._timeout = aiohttp.ClientTimeout(total=timeout_s, sock_connect=connect_timeout_s)
        self._limit = max_connections
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self._limit, keepalive_timeout=30)
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=self._timeout,
                auto_decompress=True,
                skip_auto_headers=("User-Agent",),
            )
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = request.content
        try:
            async with self._client().request(
                request.method,
                str(request.url),
                data=body if body else None,
                headers=dict(request.headers),
                allow_redirects=False,
            ) as response:
                content = await response.read()
                headers = list(response.raw_headers)
                status = response.status
        except (aiohttp.ConnectionTimeoutError, aiohttp.ClientConnectorError) as exc:
            # Never connected: the request did not leave.
            kind = (
                httpx.ConnectTimeout
                if isinstance(exc, aiohttp.ConnectionTimeoutError)
                else httpx.ConnectError
            )
            raise kind(str(exc) or type(exc).__name__, request=request) from exc
        except TimeoutError as exc:
            raise httpx.ReadTimeout(str(exc) or "timed out", request=request) from exc
        except aiohttp.ClientError as exc:
            # Connected, then lost: the exchange may have acted on it.
            raise httpx.ReadError(str(exc) or type(exc).__name__, request=request) from exc
        return httpx.Response(
            status,
            # The body is already decompressed: its encoding and length headers no longer apply.
            headers=[
                (k.decode("latin-1"), v.decode("latin-1"))
                for k, v in headers
                if k.lower() not in (b"content-encoding", b"content-length")
            ],
            content=content,
            request=request,
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
