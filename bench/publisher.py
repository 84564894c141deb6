"""Publishing benchmark signals: at a fixed rate (open loop), in bursts, in bulk.

Each XADD's send time is ``time.monotonic_ns()`` taken right before it. The
simulator stamps arrivals with the same clock (CLOCK_MONOTONIC is shared by
every process on Linux), so arrival minus send is the signal's way from the
publisher to the exchange's socket.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from redis.asyncio import Redis

from executor.publish import encode_signal

# Long enough for any signal of a run to wait its turn (the rate-budget burst takes ~50 s).
TTL_MS = 600_000
CHUNK = 1000  # XADDs per pipeline round trip when publishing in bulk

Stamps = dict[str, int]


def signal_ids(prefix: str, count: int, start: int = 0) -> list[str]:
    return [f"{prefix}-{i:06d}" for i in range(start, start + count)]


def encode(signal_id: str) -> bytes:
    """A market order for the smallest BTCUSDT quantity, as a strategy would publish it."""
    return encode_signal(
        {
            "id": signal_id,
            "symbol": "BTCUSDT",
            "side": "Buy",
            "order_type": "Market",
            "qty": "0.001",
            "category": "linear",
            "ts": int(time.time() * 1000),
            "ttl_ms": TTL_MS,
        }
    )


async def at_rate(redis: Redis, stream: str, ids: Sequence[str], rate: float) -> Stamps:
    """One XADD per id at ``rate`` per second, scheduled from a fixed start on the
    monotonic clock: a late send never delays the ones after it (open loop)."""
    payloads = [(i, {b"signal": encode(i)}) for i in ids]
    stamps: Stamps = {}
    interval_ns = int(1e9 / rate)
    start = time.monotonic_ns() + 5_000_000
    for n, (signal_id, fields) in enumerate(payloads):
        due = start + n * interval_ns
        wait_ns = due - time.monotonic_ns()
        if wait_ns > 0:
            await asyncio.sleep(wait_ns / 1e9)
        stamps[signal_id] = time.monotonic_ns()
        await redis.xadd(stream, fields)  # type: ignore[arg-type]
    return stamps


async def burst(redis: Redis, stream: str, ids: Sequence[str]) -> Stamps:
    """Every id in one pipeline: they all share one send time."""
    async with redis.pipeline(transaction=False) as pipe:
        for signal_id in ids:
            pipe.xadd(stream, {b"signal": encode(signal_id)})
        sent = time.monotonic_ns()
        await pipe.execute()
    return dict.fromkeys(ids, sent)


async def bulk(redis: Redis, stream: str, ids: Sequence[str]) -> None:
    """Append many signals fast, ``CHUNK`` per round trip; no send times kept."""
    for first in range(0, len(ids), CHUNK):
        async with redis.pipeline(transaction=False) as pipe:
            for signal_id in ids[first : first + CHUNK]:
                pipe.xadd(stream, {b"signal": encode(signal_id)})
            await pipe.execute()


def achieved_rate(stamps: Stamps) -> float:
    """Sends per second over the span of the stamps."""
    times = sorted(stamps.values())
    span_s = (times[-1] - times[0]) / 1e9 if len(times) > 1 else 0.0
    return (len(times) - 1) / span_s if span_s > 0 else 0.0
