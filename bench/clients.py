"""Client libraries sending orders they already hold, each in its own process.

    python -m bench.clients --client httpx|httpx-aiohttp|pybit|ccxt|ccxt-throttle \\
        --base-url URL --plan JSON --out FILE

The plan names phases. A ``rate`` phase sends one order after another on a
fixed schedule (a late call starts at once; the schedule does not drift). A
``pool`` phase sends ``n`` orders with ``concurrency`` senders as fast as they
go, for the throughput and rate-budget runs. Every order's send time is
``time.monotonic_ns()`` taken right before the library's create call; the
simulator stamps its arrival with the same clock.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

import httpx

from executor.bybit.signing import auth_headers, compact_json

CLIENTS = ("httpx", "httpx-aiohttp", "pybit", "ccxt", "ccxt-throttle")
RECV_WINDOW_MS = 5000


def order(link_id: str) -> dict[str, str]:
    return {
        "category": "linear",
        "symbol": "BTCUSDT",
        "side": "Buy",
        "orderType": "Market",
        "qty": "0.001",
        "orderLinkId": link_id,
    }


class Rejected(Exception):
    """The exchange answered with a non-zero retCode."""

    def __init__(self, ret_code: object) -> None:
        super().__init__(f"retCode {ret_code}")
        self.ret_code = ret_code


class Sender(Protocol):
    stamps: dict[str, int]

    async def open(self) -> None: ...

    async def create(self, link_id: str) -> None: ...

    async def close(self) -> None: ...


class HttpxSender:
    """httpx with the signing done by hand: an order in hand, one POST. With
    ``aiohttp``, the same client on httpx-aiohttp's transport: httpx's API,
    aiohttp's connection handling."""

    def __init__(self, base_url: str, api_key: str, secret: str, aiohttp: bool = False) -> None:
        self.stamps: dict[str, int] = {}
        self._key, self._secret = api_key, secret
        transport = None
        if aiohttp:
            from httpx_aiohttp import AiohttpTransport

            transport = AiohttpTransport()
        self._http = httpx.AsyncClient(base_url=base_url, timeout=10, transport=transport)

    async def open(self) -> None:
        await self._http.get("/v5/market/time")

    async def create(self, link_id: str) -> None:
        body = order(link_id)
        self.stamps[link_id] = time.monotonic_ns()
        content = compact_json(body)
        headers = auth_headers(
            self._key, self._secret, int(time.time() * 1000), RECV_WINDOW_MS, content.decode()
        )
        headers["Content-Type"] = "application/json"
        answer = await self._http.post("/v5/order/create", content=content, headers=headers)
        ret_code = answer.json().get("retCode")
        if ret_code != 0:
            raise Rejected(ret_code)

    async def close(self) -> None:
        await self._http.aclose()


class PybitSender:
    """pybit's unified_trading.HTTP, its ``endpoint`` pointed at the simulator.

    pybit is synchronous: one sender calls it on the event loop's thread (nothing
    else runs meanwhile); several senders call it from threads, one session each.
    """

    def __init__(self, base_url: str, api_key: str, secret: str, threads: int) -> None:
        self.stamps: dict[str, int] = {}
        self._base_url, self._key, self._secret = base_url, api_key, secret
        self._local = threading.local()
        self._pool = ThreadPoolExecutor(threads) if threads > 1 else None
        self.threaded = False

    def _session(self) -> Any:
        session = getattr(self._local, "session", None)
        if session is None:
            from pybit.unified_trading import HTTP

            session = HTTP(
                testnet=False,
                api_key=self._key,
                api_secret=self._secret,
                logging_level=logging.CRITICAL,
            )
            session.endpoint = self._base_url
            self._local.session = session
        return session

    def _create(self, link_id: str) -> None:
        session = self._session()
        self.stamps[link_id] = time.monotonic_ns()
        session.place_order(**order(link_id))

    async def open(self) -> None:
        self._session().get_server_time()

    async def create(self, link_id: str) -> None:
        if self._pool is None or not self.threaded:
            self._create(link_id)
        else:
            await asyncio.get_running_loop().run_in_executor(self._pool, self._create, link_id)

    async def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)


class CcxtSender:
    """ccxt's async bybit, every URL pointed at the simulator.

    Options that keep it to what the simulator serves: linear markets only, no
    currencies (a private wallet endpoint), and the account type given instead of
    asked (``/v5/account/info``).
    """

    def __init__(self, base_url: str, api_key: str, secret: str, throttle: bool) -> None:
        import ccxt.async_support as ccxt  # type: ignore[import-untyped, unused-ignore]

        self.stamps: dict[str, int] = {}
        self._exchange = ccxt.bybit(
            {
                "apiKey": api_key,
                "secret": secret,
                "enableRateLimit": throttle,
                "options": {
                    "enableUnifiedAccount": True,
                    "enableUnifiedMargin": False,
                    "fetchMarkets": {"types": ["linear"]},
                },
            }
        )
        self._exchange.urls["api"] = dict.fromkeys(self._exchange.urls["api"], base_url)
        self._exchange.has["fetchCurrencies"] = False

    async def open(self) -> None:
        await self._exchange.load_markets()

    async def create(self, link_id: str) -> None:
        self.stamps[link_id] = time.monotonic_ns()
        await self._exchange.create_order(
            "BTC/USDT:USDT", "market", "buy", 0.001, None, {"orderLinkId": link_id}
        )

    async def close(self) -> None:
        await self._exchange.close()


def make_sender(name: str, base_url: str, api_key: str, secret: str, threads: int) -> Sender:
    if name in ("httpx", "httpx-aiohttp"):
        return HttpxSender(base_url, api_key, secret, aiohttp=name == "httpx-aiohttp")
    if name == "pybit":
        return PybitSender(base_url, api_key, secret, threads)
    if name in ("ccxt", "ccxt-throttle"):
        return CcxtSender(base_url, api_key, secret, throttle=name == "ccxt-throttle")
    raise ValueError(f"unknown client {name!r}")


def error_name(exc: BaseException) -> str:
    if isinstance(exc, Rejected):
        return f"retCode {exc.ret_code}"
    return type(exc).__name__


async def attempt(
    sender: Sender, link_id: str, errors: Counter[str], examples: dict[str, str] | None = None
) -> None:
    try:
        await sender.create(link_id)
    except Exception as exc:  # every failure is counted, none stops the run
        name = error_name(exc)
        errors[name] += 1
        if examples is not None:
            examples.setdefault(name, str(exc).splitlines()[0][:160] if str(exc) else name)


async def rate_phase(
    sender: Sender,
    ids: list[str],
    rate: float,
    deadline: float,
    errors: Counter[str],
    examples: dict[str, str] | None = None,
) -> None:
    start = time.monotonic() + 0.005
    for n, link_id in enumerate(ids):
        wait = start + n / rate - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        if time.monotonic() > deadline:
            break
        await attempt(sender, link_id, errors, examples)


async def pool_phase(
    sender: Sender,
    ids: list[str],
    concurrency: int,
    deadline: float,
    errors: Counter[str],
    examples: dict[str, str] | None = None,
) -> None:
    pending = iter(ids)

    async def worker() -> None:
        for link_id in pending:
            if time.monotonic() > deadline:
                return
            await attempt(sender, link_id, errors, examples)

    await asyncio.gather(*(worker() for _ in range(concurrency)))


def cpu_s() -> float:
    times = os.times()
    return times.user + times.system


def peak_rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


async def run(args: argparse.Namespace) -> dict[str, Any]:
    plan = json.loads(args.plan)
    prefix = plan["prefix"]
    threads = max((p.get("concurrency", 1) for p in plan["phases"]), default=1)
    sender = make_sender(args.client, args.base_url, args.api_key, args.secret, threads)
    out: dict[str, Any] = {"client": args.client, "phases": {}}
    try:
        await sender.open()
        for i in range(plan.get("warmup", 0)):
            await attempt(sender, f"{prefix}-w-{i:06d}", Counter())
        for phase in plan["phases"]:
            name = phase["name"]
            errors: Counter[str] = Counter()
            examples: dict[str, str] = {}
            lead = [f"{prefix}-{name}L-{i:06d}" for i in range(phase.get("lead", 0))]
            ids = [f"{prefix}-{name}-{i:06d}" for i in range(phase["n"])]
            deadline = time.monotonic() + phase["seconds"]
            if phase["kind"] == "rate":
                await rate_phase(sender, lead, phase["rate"], deadline, Counter())
                deadline = time.monotonic() + phase["seconds"]
            if isinstance(sender, PybitSender):
                sender.threaded = phase.get("concurrency", 1) > 1
            sender.stamps.clear()
            cpu0, wall0 = cpu_s(), time.monotonic()
            if phase["kind"] == "rate":
                await rate_phase(sender, ids, phase["rate"], deadline, errors, examples)
            else:
                await pool_phase(sender, ids, phase["concurrency"], deadline, errors, examples)
            out["phases"][name] = {
                "stamps": dict(sender.stamps),
                "cpu_s": cpu_s() - cpu0,
                "wall_s": time.monotonic() - wall0,
                "errors": dict(errors),
                "examples": examples,
            }
    finally:
        await sender.close()
    out["peak_rss_kb"] = peak_rss_kb()
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from executor.bybit.sim_state import PRIMARY

    parser = argparse.ArgumentParser(prog="python -m bench.clients", description=__doc__)
    parser.add_argument("--client", choices=CLIENTS, required=True)
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--api-key", default=PRIMARY.api_key)
    parser.add_argument("--secret", default=PRIMARY.secret)
    parser.add_argument("--plan", required=True, help="phases, as JSON")
    parser.add_argument("--out", required=True, type=Path)
    return parser.parse_args(argv)


def main() -> None:
    args = parse_args()
    result = asyncio.run(run(args))
    args.out.write_text(json.dumps(result))


if __name__ == "__main__":
    main()
