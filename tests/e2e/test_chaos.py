"""Exactly once when things break, on real processes: SIGKILLed daemons, a killed
replica, a restarted Redis, a skewed clock and SIGTERM under load.

Each test ends with the same audit: every signal has exactly one terminal
result, the simulator holds exactly one order per `accepted` signal and none
for any other, and nothing is left pending.
"""

from __future__ import annotations

import asyncio
import random
import signal as signals
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from executor.publish import publish
from executor.redis_server import RedisProcess, free_port
from tests.conftest import Names
from tests.e2e.procs import (
    Proc,
    daemon_env,
    sim_get,
    sim_orders,
    sim_post,
    simulator,
    start_daemon,
    until_started,
)
from tests.integration.helpers import eventually, read_stream, signal

pytestmark = pytest.mark.e2e

TERMINAL = {"accepted", "rejected", "expired", "failed"}


def env_for(
    redis_url: str, sim_url: str, names: Names, consumer: str, **extra: str
) -> dict[str, str]:
    chaos = {
        "EXECUTOR_CONSUMER": consumer,
        "EXECUTOR_CLAIM_IDLE_MS": "2000",
        "EXECUTOR_RATE_LIMIT_PER_S": "400",
        "EXECUTOR_REQUEST_TIMEOUT_S": "3",
        # 15% injected faults trip the breaker now and then: keep its pauses short.
        "EXECUTOR_BREAKER_COOLDOWN_S": "0.5",
    }
    return daemon_env(redis_url, sim_url, names, **{**chaos, **extra})


def signals_for(prefix: str, count: int) -> list[dict[str, object]]:
    return [signal(f"{prefix}{i:04d}", id=f"{prefix}{i:04d}", ttl_ms=300_000) for i in range(count)]


async def results_count(redis: Redis, names: Names) -> int:
    return int(await redis.xlen(names.results))


async def wait_results(redis: Redis, names: Names, at_least: int, within: float = 120) -> None:
    async def enough() -> bool:
        return await results_count(redis, names) >= at_least

    await eventually(enough, within=within)


async def audit(
    redis: Redis, names: Names, sim_url: str, ids: list[str], allowed: set[str] = TERMINAL
) -> Counter[str]:
    """The exactly-once check; returns the count of each status."""
    results = await read_stream(redis, names.results)
    per_id = Counter(r["id"] for r in results)
    assert set(per_id) == set(ids), "a signal is missing a result, or an unknown one appeared"
    assert [i for i, n in per_id.items() if n != 1] == [], "a signal has more than one result"
    statuses = Counter(r["status"] for r in results)
    assert set(statuses) <= allowed, statuses
    orders = await sim_orders(sim_url)
    order_links = Counter(str(o["orderLinkId"]) for o in orders)
    assert [k for k, n in order_links.items() if n != 1] == [], "an order was placed twice"
    accepted = {r["order_link_id"] for r in results if r["status"] == "accepted"}
    assert set(order_links) == accepted, "orders at the exchange differ from accepted signals"
    by_link = {str(o["orderLinkId"]): str(o["orderId"]) for o in orders}
    assert all(
        by_link[r["order_link_id"]] == r["order_id"] for r in results if r["status"] == "accepted"
    )
    assert (await redis.xpending(names.stream, names.group))["pending"] == 0
    return statuses


async def test_sigkilled_daemon_with_a_faulty_exchange_loses_nothing_and_doubles_nothing(
    tmp_path: Path, redis: Redis, redis_url: str, names: Names, fleet: list[Proc]
) -> None:
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    print(f"chaos seed {seed}")
    total = 1000
    flags = ["--error-rate", "0.1", "--lose-rate", "0.05", "--seed", str(seed),
             "--order-limit", "unlimited", "--ip-limit", "unlimited"]  # fmt: skip
    with simulator(tmp_path, *flags) as (_sim, sim_url):
        sigs = signals_for("chaos-", total)
        await publish(redis, names.stream, sigs)
        env = env_for(redis_url, sim_url, names, "chaos-1")
        kills = sorted(rng.sample(range(100, total - 100), 3))
        for moment in kills:
            proc = start_daemon(tmp_path, env, "chaos")
            fleet.append(proc)
            await wait_results(redis, names, moment)
            proc.stop(signals.SIGKILL)
            assert proc.process.returncode == -signals.SIGKILL
        last = start_daemon(tmp_path, env, "chaos")
        fleet.append(last)
        await wait_results(redis, names, total)
        assert last.stop() == 0
        statuses = await audit(redis, names, sim_url, [str(s["id"]) for s in sigs])
        stats = await sim_get(sim_url, "/sim/stats")
    print(f"kills at {kills}; statuses {dict(statuses)}; sim faults {stats.get('faults')}")
    assert statuses["accepted"] >= total - 5  # faults are survivable, not a reason to give up
    assert sum(stats["faults"].values()) > 50  # the faults really happened


async def test_survivor_replica_finishes_the_entries_of_a_killed_one(
    tmp_path: Path, redis: Redis, redis_url: str, names: Names, fleet: list[Proc]
) -> None:
    total = 600
    with simulator(tmp_path, "--order-limit", "unlimited", "--ip-limit", "unlimited") as (
        _s,
        sim_url,
    ):
        sigs = signals_for("pair-", total)
        await publish(redis, names.stream, sigs)
        # Small queues: neither replica can take the whole stream into memory.
        share = {"EXECUTOR_RATE_LIMIT_PER_S": "100", "EXECUTOR_QUEUE_SIZE": "20",
                 "EXECUTOR_READ_COUNT": "10"}  # fmt: skip
        victim = start_daemon(tmp_path, env_for(redis_url, sim_url, names, "r1", **share), "r1")
        survivor = start_daemon(tmp_path, env_for(redis_url, sim_url, names, "r2", **share), "r2")
        fleet.extend([victim, survivor])

        async def both_working() -> bool:
            try:
                consumers = await redis.xinfo_consumers(names.stream, "executor")
            except ResponseError:
                return False  # no group yet
            pending = {c["name"]: c["pending"] for c in consumers}
            return pending.get(b"r1", 0) >= 5 and pending.get(b"r2", 0) >= 5

        await eventually(both_working, within=30)
        await wait_results(redis, names, 100)
        victim.stop(signals.SIGKILL)
        consumers = {
            c["name"]: c["pending"] for c in await redis.xinfo_consumers(names.stream, "executor")
        }
        orphaned = consumers.get(b"r1", 0)
        await wait_results(redis, names, total)
        assert survivor.stop() == 0
        await audit(redis, names, sim_url, [str(s["id"]) for s in sigs])
    assert orphaned > 0, "the killed replica held no entries: nothing was tested"
    assert "signal.claimed" in survivor.output()


async def test_redis_restart_mid_run_is_survived_and_readiness_reports_it(
    tmp_path: Path, names: Names, fleet: list[Proc]
) -> None:
    server = RedisProcess(free_port(), tmp_path / "redis", appendonly=True)
    server.directory.mkdir()
    server.start()
    redis = Redis.from_url(server.url)
    try:
        total = 400
        with simulator(tmp_path, "--order-limit", "unlimited", "--ip-limit", "unlimited") as (
            _s,
            sim_url,
        ):
            sigs = signals_for("rr-", total)
            await publish(redis, names.stream, sigs)
            env = env_for(server.url, sim_url, names, "rr", EXECUTOR_RATE_LIMIT_PER_S="80")
            proc = start_daemon(tmp_path, env, "rr")
            fleet.append(proc)
            await wait_results(redis, names, 100)
            server.stop()
            async with httpx.AsyncClient(base_url=proc.health_url) as health:

                async def unready() -> bool:
                    return (await health.get("/readyz")).status_code == 503

                await eventually(unready, within=20)
                body = (await health.get("/readyz")).json()
                assert "redis" in body["problems"]
                assert (await health.get("/healthz")).status_code == 200
                await asyncio.sleep(1.0)  # Redis stays down for a while
                assert proc.alive()
                server.start()
                await redis.aclose()
                redis = Redis.from_url(server.url)
                await wait_results(redis, names, total)

                async def ready() -> bool:
                    return (await health.get("/readyz")).status_code == 200

                await eventually(ready, within=20)
            assert proc.stop() == 0
            await audit(redis, names, sim_url, [str(s["id"]) for s in sigs])
        assert "redis.unavailable" in proc.output()
    finally:
        await redis.aclose()
        server.stop()


async def test_clock_drifting_three_seconds_ahead_is_resynced_after_one_10002(
    tmp_path: Path, redis: Redis, redis_url: str, names: Names, fleet: list[Proc]
) -> None:
    with simulator(tmp_path) as (_sim, sim_url):
        proc = start_daemon(tmp_path, env_for(redis_url, sim_url, names, "skew"), "skew")
        fleet.append(proc)
        await publish(redis, names.stream, [signal("before")])
        await wait_results(redis, names, 1)
        # The exchange's clock now runs 3 s behind ours: we are 3 s ahead.
        await sim_post(sim_url, "/sim/faults", {"clock_offset_ms": -3000})
        await publish(redis, names.stream, [signal("after")])
        await wait_results(redis, names, 2)
        stats = await sim_get(sim_url, "/sim/stats")
        assert proc.stop() == 0
        await audit(redis, names, sim_url, ["s-before", "s-after"])
    results = {r["id"]: r for r in await read_stream(redis, names.results)}
    assert (results["s-after"]["status"], results["s-after"]["attempts"]) == ("accepted", "2")
    assert stats["ret_codes"].get("10002") == 1
    # one order before the drift, then for the other: a 10002 and one re-signed resend
    assert stats["requests"]["/v5/order/create"] == 3


async def test_sigterm_under_load_drains_exits_0_and_a_restart_finishes_the_rest(
    tmp_path: Path, redis: Redis, redis_url: str, names: Names, fleet: list[Proc]
) -> None:
    total = 500
    drain_s = 5
    with simulator(tmp_path, "--latency-ms", "20", "--order-limit", "unlimited") as (_s, sim_url):
        sigs = signals_for("term-", total)
        await publish(redis, names.stream, sigs)
        env = env_for(redis_url, sim_url, names, "term", EXECUTOR_RATE_LIMIT_PER_S="50",
                      EXECUTOR_DRAIN_TIMEOUT_S=str(drain_s))  # fmt: skip
        proc = start_daemon(tmp_path, env, "term")
        fleet.append(proc)
        await wait_results(redis, names, 100)
        asked = time.monotonic()
        code = proc.stop(signals.SIGTERM, timeout=drain_s + 10)
        took = time.monotonic() - asked
        done_at_stop = await results_count(redis, names)
        assert code == 0
        assert took < drain_s + 5, f"exit took {took:.1f}s"
        assert done_at_stop < total, "everything finished before SIGTERM: nothing was tested"
        assert (await redis.xpending(names.stream, names.group))[
            "pending"
        ] > 0 or done_at_stop < total
        again = start_daemon(tmp_path, env, "term")
        fleet.append(again)
        await wait_results(redis, names, total)
        assert again.stop() == 0
        await audit(redis, names, sim_url, [str(s["id"]) for s in sigs])
    assert '"event": "daemon.drained"' in proc.output()


async def test_a_second_sigterm_forces_exit_while_draining(
    tmp_path: Path, redis: Redis, redis_url: str, names: Names, fleet: list[Proc]
) -> None:
    with simulator(tmp_path) as (_sim, sim_url):
        env = env_for(redis_url, sim_url, names, "force", EXECUTOR_DRAIN_TIMEOUT_S="60",
                      EXECUTOR_CHECK_INSTRUMENTS="false",
                      EXECUTOR_REQUEST_TIMEOUT_S="30")  # fmt: skip
        proc = start_daemon(tmp_path, env, "force")
        fleet.append(proc)
        await until_started(proc)
        # From now on every answer takes 20 s, and the drain would wait 60 s for it.
        await sim_post(sim_url, "/sim/faults", {"latency_ms": 20_000})
        await publish(redis, names.stream, [signal("stuck")])

        async def in_flight() -> bool:
            stats = await sim_get(sim_url, "/sim/stats")
            return bool(stats["requests"].get("/v5/order/create"))

        await eventually(in_flight, within=30)
        proc.process.send_signal(signals.SIGTERM)

        async def draining() -> bool:
            return "daemon.draining" in proc.output()

        await eventually(draining, within=10)
        assert proc.alive()
        asked = time.monotonic()
        code = proc.stop(signals.SIGTERM, timeout=10)
        assert time.monotonic() - asked < 10
    assert code == 130
    assert "second SIGTERM, exiting now" in proc.output()
    # Forced out mid-send: no result, the entry stays pending for the next start.
    assert await redis.xlen(names.results) == 0
    assert (await redis.xpending(names.stream, names.group))["pending"] == 1
