"""aiohttp front of the Bybit V5 simulator: routes, transport faults, an in-process server.

The request path does the least it can: stamp the arrival, ask the state for
an answer, write it. Rules and bookkeeping live in `sim_state`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.log import access_logger

from executor.bybit.signing import HEADER_KEY, HEADER_RECV_WINDOW, HEADER_SIGN, HEADER_TIMESTAMP
from executor.bybit.sim_keys import key_from_json
from executor.bybit.sim_state import ExchangeState
from executor.bybit.sim_types import Answer, SimConfig, SimRequest, wall_clock_ms

__all__ = ["ExchangeState", "SimConfig", "SimulatorServer", "build_app"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _respond(state: ExchangeState, answer: Answer) -> web.Response:
    state.stats.sent(answer.status)
    return web.Response(
        body=answer.encode(),
        status=answer.status,
        headers=answer.headers,
        content_type=answer.content_type,
        charset="utf-8",
    )


async def _delay(state: ExchangeState) -> None:
    latency_ms = state.knobs.latency_ms
    if latency_ms > 0:
        await asyncio.sleep(latency_ms / 1000.0)


def _v5_handler(state: ExchangeState) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        # First thing: a benchmark compares this stamp with the publisher's monotonic clock.
        received_ns = state.monotonic_ns()
        path = request.path
        client_ip = request.remote or ""
        if request.transport is not None:
            peer = request.transport.get_extra_info("peername")
            state.stats.peers.add(f"{peer[0]}:{peer[1]}" if peer else "?")
        blocked = state.gate(path, client_ip)
        if blocked is not None:
            await _delay(state)
            return _respond(state, blocked)
        body = await request.read() if request.method == "POST" else b""
        headers = request.headers
        answer = state.dispatch(
            SimRequest(
                method=request.method,
                path=path,
                query=request.rel_url.raw_query_string,
                body=body,
                api_key=headers.get(HEADER_KEY),
                timestamp=headers.get(HEADER_TIMESTAMP),
                recv_window=headers.get(HEADER_RECV_WINDOW),
                sign=headers.get(HEADER_SIGN),
                client_ip=client_ip,
                received_ns=received_ns,
            )
        )
        if state.draw_lose(path):
            # The exchange acted on the request; the client hears nothing but a closed socket.
            # The response returned below is never written: aiohttp finds the transport closing.
            if request.transport is not None:
                request.transport.close()
            return web.Response(status=200)
        await _delay(state)
        return _respond(state, answer)

    return handle


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=json.dumps(data, separators=(",", ":")).encode(),
        status=status,
        content_type="application/json",
    )


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        data = await request.json() if await request.read() else {}
    except ValueError as exc:
        raise web.HTTPBadRequest(text=f"invalid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise web.HTTPBadRequest(text="expected a JSON object")
    return data


def _admin_routes(state: ExchangeState) -> list[web.RouteDef]:
    async def orders(request: web.Request) -> web.Response:
        return _json(state.orders_as_dicts())

    async def stats(request: web.Request) -> web.Response:
        return _json(state.stats.snapshot())

    async def get_faults(request: web.Request) -> web.Response:
        return _json(state.faults())

    async def set_faults(request: web.Request) -> web.Response:
        body = await _body(request)
        try:
            return _json(state.set_faults(**body))
        except (TypeError, ValueError) as exc:
            return _json({"error": str(exc)}, status=400)

    async def _api_key(request: web.Request) -> str:
        api_key = (await _body(request)).get("api_key")
        if not isinstance(api_key, str) or not api_key:
            raise web.HTTPBadRequest(text="api_key required")
        return api_key

    async def revoke(request: web.Request) -> web.Response:
        state.revoke(await _api_key(request))
        return _json({"revoked": state.faults()["revoked"]})

    async def restore(request: web.Request) -> web.Response:
        state.restore(await _api_key(request))
        return _json({"revoked": state.faults()["revoked"]})

    async def add_key(request: web.Request) -> web.Response:
        body = await _body(request)
        try:
            key = key_from_json(body)
        except (KeyError, TypeError, ValueError) as exc:
            return _json({"error": f"bad key: {exc}"}, status=400)
        state.add_key(key)
        return _json({"api_key": key.api_key, "user_id": key.user_id})

    async def set_price(request: web.Request) -> web.Response:
        body = await _body(request)
        category = body.get("category")
        try:
            state.set_price(str(body["symbol"]), str(body["price"]), category)
        except KeyError as exc:
            return _json({"error": f"unknown instrument or missing field: {exc}"}, status=400)
        except ValueError as exc:
            return _json({"error": str(exc)}, status=400)
        return _json({"symbol": body["symbol"], "price": str(body["price"])})

    async def reset(request: web.Request) -> web.Response:
        state.reset()
        return _json({"reset": True})

    return [
        web.get("/sim/orders", orders),
        web.get("/sim/stats", stats),
        web.get("/sim/faults", get_faults),
        web.post("/sim/faults", set_faults),
        web.post("/sim/keys", add_key),
        web.post("/sim/keys/revoke", revoke),
        web.post("/sim/keys/restore", restore),
        web.post("/sim/prices", set_price),
        web.post("/sim/reset", reset),
    ]


def build_app(state: ExchangeState) -> web.Application:
    app = web.Application()
    handle = _v5_handler(state)
    app.add_routes([web.route(r.method, path, handle) for path, r in state.routes.items()])
    app.add_routes(_admin_routes(state))
    return app


class SimulatorServer:
    """The simulator on a real socket, in the caller's event loop.

    ``async with SimulatorServer(SimConfig(...)) as sim:`` then ``sim.url`` and
    ``sim.state`` (the `ExchangeState`: orders, stats, set_faults, revoke...).
    """

    def __init__(
        self,
        config: SimConfig | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Callable[[], float] = wall_clock_ms,
        state: ExchangeState | None = None,
    ) -> None:
        self.config = config or (state.config if state is not None else SimConfig())
        self.state = state or ExchangeState(self.config, clock=clock)
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        if self._runner is not None:
            raise RuntimeError("simulator already started")
        runner = web.AppRunner(
            build_app(self.state),
            handle_signals=False,
            # A stand-in exchange has nothing worth waiting for at shutdown.
            shutdown_timeout=1.0,
            # Off by default: a log line per request costs more than the rest of the order path.
            access_log=access_logger if self.config.access_log else None,
            keepalive_timeout=self.config.idle_timeout_s,
        )
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.host, self.port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = int(runner.addresses[0][1])

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> SimulatorServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()
