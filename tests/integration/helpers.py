"""Helpers shared by integration tests: building pipelines, reading streams, waiting."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from redis.asyncio import Redis

from executor.dedup import Dedup
from executor.intake import Intake
from executor.pipeline import Job, Pipeline
from executor.resp import Lean
from executor.signals import Signal
from executor.submitter import Outcome

# Lean connections opened by ``lean_beside``, closed after each test (conftest).
OPEN_LEANS: list[Lean] = []


def lean_beside(redis: Redis) -> Lean:
    """A lean connection to the Redis that ``redis`` talks to."""
    where = redis.connection_pool.connection_kwargs
    lean = Lean(f"redis://{where['host']}:{where['port']}/{where.get('db', 0)}")
    OPEN_LEANS.append(lean)
    return lean


def text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


async def read_stream(redis: Redis, stream: str) -> list[dict[str, str]]:
    entries = await redis.xrange(stream) or []
    return [{text(k): text(v) for k, v in fields.items()} for _id, fields in entries]


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 10.0) -> None:
    """Wait until ``check`` holds; fail with a clear message when it never does."""
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within}s")
        await asyncio.sleep(0.02)


def signal(n: int | str, **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": f"s-{n}",
        "symbol": "BTCUSDT",
        "side": "Buy",
        "order_type": "Market",
        "qty": "0.001",
        "ts": int(time.time() * 1000),
        "ttl_ms": 60_000,
    }
    base.update(fields)
    return base


class GatedSubmitter:
    """Stands in for the exchange side: records each submit, holds it until released."""

    def __init__(self, open_gate: bool = True, batch: int = 1) -> None:
        self.calls: list[tuple[str, bool]] = []
        self.batches: list[list[str]] = []  # the signal ids of each submit_batch
        self._batch = batch
        self.asked: list[tuple[str, int]] = []  # grants asked for ahead: (category, count)
        self.gate = asyncio.Event()
        if open_gate:
            self.gate.set()

    async def submit(
        self, signal: Signal, *, maybe_sent: bool = False, received_ms: float | None = None
    ) -> Outcome:
        self.calls.append((signal.id, maybe_sent))
        await self.gate.wait()
        return Outcome(status="accepted", order_id=f"oid-{signal.id}", key="primary", attempts=1)

    def batch_size(self, category: str) -> int:
        return self._batch  # 1 (the default): one by one, so the record is per signal

    async def submit_batch(
        self, signals: Sequence[Signal], received_ms: Sequence[float | None]
    ) -> list[Outcome]:
        self.batches.append([s.id for s in signals])
        await self.gate.wait()
        return [
            Outcome(status="accepted", order_id=f"oid-{s.id}", key="primary", attempts=1)
            for s in signals
        ]

    def ahead(self, category: str, count: int) -> None:
        self.asked.append((category, count))


def make_pipeline(
    redis: Redis,
    stream: str,
    results: str,
    dead: str,
    *,
    consumer: str = "c1",
    group: str = "executor",
    submitter: Any = None,
    queue_size: int = 100,
    workers: int = 4,
    read_count: int = 100,
    signal_secrets: dict[str, str] | None = None,
) -> Pipeline:
    # As the daemon has them: the read and the hot path on lean connections.
    hot = lean_beside(redis)
    intake = Intake(
        redis, stream, group, consumer, results, dead, reader=lean_beside(redis), hot=hot
    )
    dedup = Dedup(redis, prefix=f"executor:{stream}", ttl_s=3600, hot=hot)
    queue: asyncio.Queue[Job] = asyncio.Queue(maxsize=queue_size)
    return Pipeline(
        intake,
        dedup,
        submitter or GatedSubmitter(),
        queue,
        signal_secrets=signal_secrets,
        workers=workers,
        read_count=read_count,
        block_ms=50,
    )
