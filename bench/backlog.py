"""Resident memory of the daemon while a backlog waits in the stream.

The daemon runs against its own simulator, which holds every answer back for
``HOLD_MS``: each worker then waits on one order, the bounded queue fills, and
intake stops reading. Signals appended after that must wait in Redis, not in
the daemon. Memory is read with 0 signals waiting and at each mark.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any

from redis.asyncio import Redis

from bench import publisher
from bench.harness import Lab, SimAdmin, memory_kb
from bench.pipelines import Feeder, Streams, daemon_env
from bench.plan import Plan
from bench.results import Backlog, BacklogPoint

HOLD_MS = 100_000  # longer than the test; shorter than the daemon's request timeout below
GROUP = "executor"
SETTLE_TIMEOUT_S = 20.0


async def run_backlog(
    lab: Lab,
    redis: Redis,
    redis_url: str,
    plan: Plan,
    nonce: str,
    extra_env: Mapping[str, str],
) -> Backlog:
    sim_proc, sim_url = await lab.simulator(
        "sim-backlog", "--order-limit", "unlimited", "--ip-limit", "unlimited"
    )
    sim = SimAdmin(sim_url)
    streams = Streams.named(nonce, "backlog")
    env = daemon_env(
        redis_url,
        sim_url,
        streams,
        "bench-backlog",
        EXECUTOR_REQUEST_TIMEOUT_S=str(HOLD_MS // 1000 + 20),
        EXECUTOR_DRAIN_TIMEOUT_S="1",
        **extra_env,
    )
    proc = lab.start("daemon-backlog", ["-m", "executor", "run"], env)
    try:
        feed = Feeder(redis, sim, proc, streams.signals, f"k{nonce}")
        await feed.at_rate("ready", 1, 1)
        await feed.at_rate("w", 100, 200)
        points = [await _point(redis, streams.signals, proc.pid, 0)]
        await sim.faults(latency_ms=HOLD_MS)
        appended = 0
        for mark in plan.backlog_marks:
            ids = publisher.signal_ids(f"{feed.prefix}-k", mark - appended, start=appended)
            await publisher.bulk(redis, streams.signals, ids)
            appended = mark
            await _settled(redis, streams.signals)
            points.append(await _point(redis, streams.signals, proc.pid, appended))
        peak = memory_kb(proc.pid, "VmHWM") / 1024
    finally:
        await lab.stop_async(proc, grace_s=30)
        await lab.stop_async(sim_proc)
        await sim.aclose()
    return Backlog(
        queue_size=int(env.get("EXECUTOR_QUEUE_SIZE", 1000)),
        workers=int(env.get("EXECUTOR_WORKERS", 16)),
        points=points,
        peak_rss_mb=peak,
    )


async def _group(redis: Redis, stream: str) -> dict[str, Any]:
    for group in await redis.xinfo_groups(stream):
        name = group.get("name")
        if (name.decode() if isinstance(name, bytes) else name) == GROUP:
            return dict(group)
    raise RuntimeError(f"no group {GROUP} on {stream}")


async def _settled(redis: Redis, stream: str) -> None:
    """Until the daemon stops taking entries: its pending count holds still."""
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    last, steady = -1, 0
    while steady < 3 and time.monotonic() < deadline:
        await asyncio.sleep(0.25)
        pending = int((await _group(redis, stream))["pending"])
        steady = steady + 1 if pending == last else 0
        last = pending


async def _point(redis: Redis, stream: str, pid: int, appended: int) -> BacklogPoint:
    group = await _group(redis, stream)
    memory = await redis.info("memory")
    return BacklogPoint(
        appended=appended,
        lag=int(group.get("lag") or 0),
        pending=int(group["pending"]),
        rss_mb=memory_kb(pid, "VmRSS") / 1024,
        redis_mb=int(memory["used_memory"]) / 2**20,
    )
