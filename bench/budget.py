"""The rate budget: one burst of signals against a simulator that allows
``LIMIT`` order creations per second per account, as Bybit does for linear.

Every contender gets its own simulator (so its 10006 count is its own), and
they run side by side: at 10 orders per second the machine is idle and they
cannot disturb each other, and the whole part takes as long as its slowest run.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from typing import Any

from redis.asyncio import Redis

from bench import publisher
from bench.harness import Lab, SimAdmin
from bench.inhand import run_client
from bench.pipelines import Feeder, Streams, daemon_env
from bench.plan import Plan
from bench.results import BudgetRun

LIMIT = 10  # Bybit's default order-create limit for linear, per account per second
PAUSE_S = 1.2  # lets the simulator's one-second window empty after the readiness signal


def cap_s(signals: int) -> float:
    """How long any contender may take: three times the budget's pace, and then some."""
    return 3 * signals / LIMIT + 20


@contextlib.asynccontextmanager
async def _sim(lab: Lab, name: str) -> AsyncIterator[SimAdmin]:
    """A simulator of this contender's own, stopped after its run."""
    proc, url = await lab.simulator(
        f"sim-budget-{name}", "--order-limit", str(LIMIT), "--ip-limit", "unlimited"
    )
    sim = SimAdmin(url)
    try:
        yield sim
    finally:
        await sim.aclose()
        await lab.stop_async(proc)


async def _daemon(
    lab: Lab, redis: Redis, redis_url: str, n: int, nonce: str, extra_env: Mapping[str, str]
) -> BudgetRun:
    async with _sim(lab, "daemon") as sim:
        return await _daemon_run(lab, sim, redis, redis_url, n, nonce, extra_env)


async def _daemon_run(
    lab: Lab,
    sim: SimAdmin,
    redis: Redis,
    redis_url: str,
    n: int,
    nonce: str,
    extra_env: Mapping[str, str],
) -> BudgetRun:
    streams = Streams.named(nonce, "budget")
    env = daemon_env(redis_url, sim.url, streams, "bench-budget", **extra_env)
    # The daemon's own pacing (10/s, burst 1) unless the command line sets one.
    for name in ("EXECUTOR_RATE_LIMIT_PER_S", "EXECUTOR_RATE_LIMIT_BURST"):
        if name not in extra_env:
            del env[name]
    proc = lab.start("daemon-budget", ["-m", "executor", "run"], env)
    try:
        feed = Feeder(redis, sim, proc, streams.signals, f"u{nonce}")
        await feed.at_rate("ready", 1, 1)
        await asyncio.sleep(PAUSE_S)
        await sim.reset()
        ids = publisher.signal_ids(f"{feed.prefix}-u", n)
        stamps = await publisher.burst(redis, streams.signals, ids)
        statuses = await _results(redis, streams.results, n + 1, cap_s(n))
        stats, arrivals = await sim.stats(), await sim.arrivals()
    finally:
        await lab.stop_async(proc, grace_s=30)
    placed = [arrivals[i] for i in ids if i in arrivals]
    statuses.pop("accepted", None)
    return BudgetRun(
        name="daemon",
        how="one XADD pipeline; defaults: 10/s, burst 1, 16 workers",
        signals=n,
        placed=len(placed),
        rate_limited=int(stats["ret_codes"].get("10006", 0)),
        other_errors=dict(statuses),
        seconds=(max(placed) - min(stamps.values())) / 1e9 if placed else 0.0,
        finished=len(placed) == n,
        limit_per_s=LIMIT,
    )


async def _results(redis: Redis, stream: str, count: int, within_s: float) -> Counter[str]:
    """Statuses in the results stream once it holds ``count`` entries (or after ``within_s``)."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if await redis.xlen(stream) >= count:
            break
        await asyncio.sleep(0.2)
    statuses: Counter[str] = Counter()
    entries: Any = await redis.xrange(stream)
    for _id, fields in entries:
        statuses[fields.get(b"status", b"").decode()] += 1
    return statuses


async def _client(lab: Lab, name: str, n: int, concurrency: int, nonce: str) -> BudgetRun:
    label = f"{name} ×{concurrency}" if concurrency not in (1, n) else name
    tag = {"pybit": "p", "ccxt": "c", "ccxt-throttle": "t"}[name]
    plan: dict[str, Any] = {
        "prefix": f"u{tag}{concurrency}x{nonce}",
        "phases": [
            {"name": "u", "kind": "pool", "n": n, "concurrency": concurrency, "seconds": cap_s(n)}
        ],
    }
    async with _sim(lab, f"{name}-{concurrency}") as sim:
        report = await run_client(lab, name, sim.url, plan, within_s=cap_s(n) + 60)
        stats, arrivals = await sim.stats(), await sim.arrivals()
    phase = report["phases"]["u"]
    stamps: dict[str, int] = phase["stamps"]
    placed = [arrivals[i] for i in stamps if i in arrivals]
    if concurrency == n:
        how = f"all {n} create calls at once (asyncio.gather)"
    elif concurrency == 1:
        how = "one call after another"
    else:
        how = f"{concurrency} threads"
    return BudgetRun(
        name=label,
        how=how,
        signals=n,
        placed=len(placed),
        rate_limited=int(stats["ret_codes"].get("10006", 0)),
        other_errors=dict(phase["errors"]),
        seconds=(max(placed) - min(stamps.values())) / 1e9 if placed else 0.0,
        finished=len(placed) == n,
        limit_per_s=LIMIT,
        examples=dict(phase.get("examples", {})),
    )


async def run_budget(
    lab: Lab,
    redis: Redis,
    redis_url: str,
    plan: Plan,
    nonce: str,
    extra_env: Mapping[str, str],
) -> list[BudgetRun]:
    n = plan.budget_burst
    runs = await asyncio.gather(
        _daemon(lab, redis, redis_url, n, nonce, extra_env),
        _client(lab, "pybit", n, 1, nonce),
        _client(lab, "pybit", n, plan.concurrency, nonce),
        _client(lab, "ccxt", n, n, nonce),
        _client(lab, "ccxt-throttle", n, n, nonce),
    )
    return list(runs)
