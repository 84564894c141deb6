"""The floor: the least a Redis-to-Bybit bridge can do for a signal.

XREADGROUP, parse the JSON, build the order body, sign it, POST it on a
keep-alive aiohttp connection, XACK. No validation, dedup, limiter, retries,
results or metrics: what remains is the unavoidable Redis hop and HTTP request,
and the benchmark measures the daemon against it.

    python -m bench.floor --redis URL --base-url URL --stream S [--concurrency 16]
        [--loop uvloop|asyncio]

It runs on the event loop the daemon runs on (``--loop``), so that the loop's
cost is not counted as the daemon's. Prints ``floor ready`` once its group
exists and its connection is open; stops on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import time
from typing import Any

import aiohttp
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from executor.bybit.signing import auth_headers, compact_json
from executor.bybit.sim_state import PRIMARY

RECV_WINDOW_MS = 5000


class Floor:
    def __init__(
        self,
        redis: Redis,
        http: aiohttp.ClientSession,
        stream: str,
        group: str,
        *,
        api_key: str,
        secret: str,
        concurrency: int,
    ) -> None:
        self.redis = redis
        self.http = http
        self.stream = stream
        self.group = group
        self.api_key = api_key
        self.secret = secret
        self.slots = asyncio.Semaphore(concurrency)
        self.tasks: set[asyncio.Task[None]] = set()

    async def ensure_group(self) -> None:
        with contextlib.suppress(ResponseError):
            await self.redis.xgroup_create(self.stream, self.group, id="0", mkstream=True)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            reply: Any = await self.redis.xreadgroup(
                self.group, "floor", {self.stream: ">"}, count=100, block=100
            )
            for _stream, entries in reply or []:
                for entry_id, fields in entries:
                    await self.slots.acquire()
                    task = asyncio.create_task(self.send(entry_id, fields))
                    self.tasks.add(task)
                    task.add_done_callback(self.tasks.discard)
        await asyncio.gather(*self.tasks, return_exceptions=True)

    async def send(self, entry_id: bytes, fields: dict[bytes, bytes]) -> None:
        try:
            signal_ = json.loads(fields[b"signal"])
            body = compact_json(
                {
                    "category": signal_.get("category", "linear"),
                    "symbol": signal_["symbol"],
                    "side": signal_["side"],
                    "orderType": signal_["order_type"],
                    "qty": str(signal_["qty"]),
                    "orderLinkId": signal_["id"],
                }
            )
            headers = auth_headers(
                self.api_key, self.secret, int(time.time() * 1000), RECV_WINDOW_MS, body.decode()
            )
            headers["Content-Type"] = "application/json"
            async with self.http.post("/v5/order/create", data=body, headers=headers) as answer:
                await answer.read()
            await self.redis.xack(self.stream, self.group, entry_id)
        finally:
            self.slots.release()


async def main(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    redis = Redis.from_url(args.redis)
    connector = aiohttp.TCPConnector(limit=args.concurrency)
    async with aiohttp.ClientSession(args.base_url, connector=connector) as http:
        floor = Floor(
            redis,
            http,
            args.stream,
            args.group,
            api_key=args.api_key,
            secret=args.secret,
            concurrency=args.concurrency,
        )
        await floor.ensure_group()
        async with http.get("/v5/market/time") as answer:  # opens the keep-alive connection
            await answer.read()
        print("floor ready", flush=True)
        await floor.run(stop)
    await redis.aclose()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.floor", description=__doc__)
    parser.add_argument("--redis", required=True)
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--stream", required=True)
    parser.add_argument("--group", default="floor")
    parser.add_argument("--api-key", default=PRIMARY.api_key)
    parser.add_argument("--secret", default=PRIMARY.secret)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="asyncio")
    return parser.parse_args(argv)


if __name__ == "__main__":
    arguments = parse_args()
    if arguments.loop == "uvloop":
        import uvloop

        uvloop.run(main(arguments))
    else:
        asyncio.run(main(arguments))
