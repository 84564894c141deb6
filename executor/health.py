"""Liveness, readiness and Prometheus metrics over HTTP, on the metrics port.

``/healthz`` answers while the event loop turns (a stuck loop answers nothing,
which is the point). ``/readyz`` is 200 only when the daemon can do its job
now: Redis reachable with the group present, and no IP ban in force.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST as CONTENT_TYPE

Check = Callable[[], str | None]  # None when fine, else the reason it is not


@dataclass
class Health:
    checks: dict[str, Check] = field(default_factory=dict)

    def problems(self) -> dict[str, str]:
        found = {}
        for name, check in self.checks.items():
            reason = check()
            if reason is not None:
                found[name] = reason
        return found


class MetricsSource(Protocol):
    def render(self) -> bytes: ...


def build_app(health: Health, metrics: MetricsSource | None = None) -> web.Application:
    async def healthz(_request: web.Request) -> web.Response:
        return web.json_response({"status": "alive"})

    async def readyz(_request: web.Request) -> web.Response:
        problems = health.problems()
        if problems:
            return web.json_response({"status": "not ready", "problems": problems}, status=503)
        return web.json_response({"status": "ready"})

    async def metrics_page(_request: web.Request) -> web.Response:
        assert metrics is not None
        response = web.Response(body=metrics.render())
        response.headers["Content-Type"] = CONTENT_TYPE
        return response

    app = web.Application()
    if metrics is not None:
        app.router.add_get("/metrics", metrics_page)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app


class HealthServer:
    """Serves ``/metrics``, ``/healthz`` and ``/readyz``; port 0 turns it off."""

    def __init__(
        self, health: Health, host: str, port: int, metrics: MetricsSource | None = None
    ) -> None:
        self._runner = web.AppRunner(build_app(health, metrics), access_log=None)
        self._host = host
        self._port = port

    async def __aenter__(self) -> HealthServer:
        if self._port:
            await self._runner.setup()
            await web.TCPSite(self._runner, self._host, self._port).start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._runner.cleanup()
