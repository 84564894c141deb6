"""`executor demo`: the whole flow on a private Redis and the simulator, no keys needed."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

from pydantic import SecretStr
from redis.asyncio import Redis

from executor import logs
from executor.app import run_daemon
from executor.bybit.sim_state import PRIMARY
from executor.bybit.simulator import SimConfig, SimulatorServer
from executor.publish import publish
from executor.redis_server import embedded_redis
from executor.settings import load_settings

WAIT_S = 60.0


def sample_signals(run: str) -> list[tuple[dict[str, Any] | bytes, str]]:
    """About twenty signals with the outcome each must get: valid ones of every
    shape, one duplicate, broken ones."""
    now = int(time.time() * 1000)

    def sig(n: int, **fields: Any) -> dict[str, Any]:
        return {"id": f"demo-{run}-{n:02d}", "ts": now, "strategy": "demo", **fields}

    valid: list[dict[str, Any] | bytes] = [
        sig(1, symbol="BTCUSDT", side="Buy", order_type="Market", qty="0.001"),
        sig(2, symbol="BTCUSDT", side="Sell", order_type="Limit", qty="0.002", price="65000.5"),
        sig(3, symbol="ETHUSDT", side="buy", order_type="limit", qty="0.05", price="3100"),
        sig(4, symbol="ETHUSDT", side="Sell", order_type="Market", qty=0.1),
        sig(5, symbol="SOLUSDT", side="Buy", order_type="Market", qty="1.5"),
        sig(6, symbol="SOLUSDT", side="Sell", order_type="Limit", qty="2", price="150.125",
            time_in_force="PostOnly"),
        sig(7, symbol="BTCUSDT", side="Buy", order_type="Limit", qty="0.001", price="60000",
            take_profit="70000", stop_loss="55000"),
        sig(8, symbol="ETHUSDT", side="Sell", order_type="Market", qty="0.02",
            reduce_only=False),
        sig(9, symbol="BTCUSDT", side="Buy", order_type="Market", qty="0.003",
            category="spot"),
        sig(10, symbol="SOLUSDT", side="Buy", order_type="Limit", qty="0.5", price="140",
            time_in_force="IOC"),
        sig(11, symbol="ETHUSDT", side="Buy", order_type="Limit", qty="0.03", price="3000.01",
            position_idx=0),
        sig(12, symbol="BTCUSDT", side="Sell", order_type="Market", qty="0.004",
            ttl_ms=60_000),
        {**sig(13, symbol="ETHUSDT", side="Buy", order_type="Market", qty="0.01"),
         "id": f"tradingview:{run}:ETH/USDT breakout long"},  # not a valid orderLinkId
        sig(14, symbol="SOLUSDT", side="Sell", order_type="Market", qty="0.7",
            source="voiceofchain"),
    ]  # fmt: skip
    duplicate = dict(valid[0])  # type: ignore[arg-type]
    invalid: list[dict[str, Any] | bytes] = [
        b"this is not json",
        sig(15, symbol="BTCUSDT", side="Buy", order_type="Market"),  # no qty
        sig(16, symbol="BTCUSDT", side="Buy", order_type="Market", qty="0"),
        sig(17, symbol="BTCUSDT", side="Buy", order_type="Market", qty="lots"),
        sig(18, symbol="BTCUSDT", side="Buy", order_type="Limit", qty="0.001"),  # no price
        sig(19, symbol="BTCUSDT", side="Hold", order_type="Market", qty="0.001"),
        sig(20, symbol="BTCUSDT", side="Buy", order_type="Market", qty="0.001",
            reduceonly=True),  # misspelt field
    ]  # fmt: skip
    return [
        *((v, "accepted") for v in valid),
        (duplicate, "duplicate"),
        *((i, "invalid") for i in invalid),
    ]


@contextlib.contextmanager
def _redis_url() -> Iterator[str]:
    url = os.environ.get("EXECUTOR_REDIS_URL")
    if url:
        yield url
        return
    with embedded_redis() as embedded:
        yield embedded


async def run_demo(verbose: bool = False) -> int:
    run = uuid.uuid4().hex[:6]
    logs.configure("info" if verbose else "error", "console")
    with _redis_url() as redis_url:
        async with SimulatorServer(SimConfig(), host="127.0.0.1", port=0) as sim:
            prefix = f"executor-demo:{run}"
            settings = load_settings(
                redis_url=SecretStr(redis_url),
                stream=f"{prefix}:signals",
                results_stream=f"{prefix}:results",
                dead_letter_stream=f"{prefix}:dead",
                group="executor-demo",
                bybit_base_url=sim.url,
                primary_api_key=SecretStr(PRIMARY.api_key),
                primary_api_secret=SecretStr(PRIMARY.secret),
                signal_secret=None,
                dry_run=False,
                metrics_port=0,
            )
            print(f"redis     {redis_url}")
            print(f"simulator {sim.url}")
            print(f"stream    {settings.stream}\n")
            redis = Redis.from_url(redis_url)
            stop = asyncio.Event()
            daemon = asyncio.create_task(run_daemon(settings, stop))
            try:
                samples = sample_signals(run)
                entry_ids = await publish(redis, settings.stream, [s for s, _ in samples])
                expected = dict(zip(entry_ids, (want for _, want in samples), strict=True))
                results = await _wait_for_results(redis, settings.results_stream, len(samples))
                dead = await redis.xlen(settings.dead_letter_stream)
            finally:
                stop.set()
                await daemon
                await redis.aclose()
            orders = {order["orderLinkId"] for order in sim.state.orders_as_dicts()}
    return _report(results, orders, dead, expected)


async def _wait_for_results(redis: Redis, stream: str, expected: int) -> list[dict[str, str]]:
    deadline = time.monotonic() + WAIT_S
    while True:
        entries = await redis.xrange(stream) or []
        if len(entries) >= expected or time.monotonic() > deadline:
            return [_text_fields(fields or {}) for _id, fields in entries]
        await asyncio.sleep(0.1)


def _report(
    results: list[dict[str, str]], orders: set[str], dead: int, expected: dict[str, str]
) -> int:
    header = f"{'id':<34} {'status':<10} {'orderLinkId':<36} {'orderId':<36} {'ms':>5}  reason"
    print(header)
    print("-" * len(header))
    wrong = []
    for r in results:
        shown_id = r["id"] if len(r["id"]) <= 34 else r["id"][:31] + "..."
        reason = r["ret_msg"] if r["status"] != "accepted" else ""
        print(
            f"{shown_id or '(unreadable)':<34} {r['status']:<10} {r['order_link_id']:<36} "
            f"{r['order_id']:<36} {r['latency_ms']:>5}  {reason}"
        )
        if expected.get(r["entry_id"]) != r["status"]:
            wrong.append(f"{r['id'] or r['entry_id']}: {r['status']}, expected "
                         f"{expected.get(r['entry_id'])}")  # fmt: skip
    counts: dict[str, int] = {}
    for r in results:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    accepted = {r["order_link_id"] for r in results if r["status"] == "accepted"}
    print()
    print("outcomes: " + ", ".join(f"{n} {status}" for status, n in sorted(counts.items())))
    print(f"orders at the simulator: {len(orders)}, one for each accepted signal: "
          f"{'yes' if orders == accepted else 'NO'}")  # fmt: skip
    print(f"dead letters: {dead}")
    print("orders are paced at 10/s, Bybit's default linear limit (EXECUTOR_RATE_LIMIT_PER_S)")
    missing = len(expected) - len(results)
    if wrong or missing or orders != accepted or dead != counts.get("invalid", 0):
        for line in wrong:
            print(f"demo: {line}")
        if missing:
            print(f"demo: {missing} signal(s) got no outcome within {WAIT_S:.0f}s")
        return 1
    return 0


def _text_fields(fields: Mapping[bytes | str, bytes | str]) -> dict[str, str]:
    def text(value: bytes | str) -> str:
        return value.decode(errors="replace") if isinstance(value, bytes) else value

    return {text(k): text(v) for k, v in fields.items()}
