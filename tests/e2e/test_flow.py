"""End to end: `executor run` and `executor sim` as processes, a real Redis between them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from redis.asyncio import Redis

from executor.publish import publish
from tests.conftest import Names
from tests.e2e.procs import daemon, daemon_env, sim_orders, simulator
from tests.integration.helpers import eventually, read_stream, signal

pytestmark = pytest.mark.e2e


async def test_200_signals_become_exactly_200_orders_with_their_ids(
    tmp_path: Path, redis: Redis, redis_url: str, names: Names
) -> None:
    with (
        simulator(tmp_path, "--order-limit", "400") as (_sim, sim_url),
        daemon(
            tmp_path, daemon_env(redis_url, sim_url, names, EXECUTOR_RATE_LIMIT_PER_S="200")
        ) as proc,
    ):
        ids = [f"e2e-{i:03d}" for i in range(200)]
        await publish(redis, names.stream, [signal(i, id=i) for i in ids])

        async def all_done() -> bool:
            return await redis.xlen(names.results) >= 200

        await eventually(all_done, within=60)
        assert proc.alive()
        orders = await sim_orders(sim_url)
        assert proc.stop() == 0

    assert sorted(str(o["orderLinkId"]) for o in orders) == ids
    results = await read_stream(redis, names.results)
    assert len(results) == 200
    assert {r["status"] for r in results} == {"accepted"}
    assert {r["id"]: r["order_id"] for r in results} == {
        str(o["orderLinkId"]): str(o["orderId"]) for o in orders
    }
    assert (await redis.xpending(names.stream, "executor"))["pending"] == 0
    log_lines = proc.events()
    accepted = [line for line in log_lines if line.get("event") == "order.accepted"]
    assert len(accepted) == 200
    assert {"id", "order_link_id", "outcome", "key", "attempts", "latency_ms"} <= set(accepted[0])


async def test_bad_input_is_dead_lettered_and_the_daemon_keeps_running(
    tmp_path: Path, redis: Redis, redis_url: str, names: Names
) -> None:
    bad = [
        b"not json at all",
        json.dumps({"id": "missing", "symbol": "BTCUSDT"}).encode(),
        json.dumps(signal("zero", qty="0")).encode(),
        json.dumps(signal("negative", qty="-0.5")).encode(),
        json.dumps(signal("words", qty="a lot")).encode(),
        json.dumps(signal("huge", note="x" * 1_048_576)).encode(),
    ]
    with (
        simulator(tmp_path) as (_sim, sim_url),
        daemon(tmp_path, daemon_env(redis_url, sim_url, names)) as proc,
    ):
        await publish(redis, names.stream, bad)

        async def all_dead() -> bool:
            return await redis.xlen(names.dead) >= len(bad)

        await eventually(all_dead, within=30)
        # Still alive and still working: a good signal after the bad ones goes through.
        await publish(redis, names.stream, [signal("good")])

        async def good_done() -> bool:
            return await redis.xlen(names.results) >= len(bad) + 1

        await eventually(good_done, within=30)
        assert proc.alive()
        orders = await sim_orders(sim_url)
        assert proc.stop() == 0

    dead = await read_stream(redis, names.dead)
    reasons = [d["reason"] for d in dead]
    assert reasons[0].startswith("not valid JSON")
    assert "side: required" in reasons[1]
    assert "qty: must be greater than 0" in reasons[2]
    assert "qty: must be greater than 0" in reasons[3]
    assert "qty: must be a decimal number" in reasons[4]
    assert "too large" in reasons[5]
    assert [o["orderLinkId"] for o in orders] == ["s-good"]
    assert (await redis.xpending(names.stream, "executor"))["pending"] == 0


async def test_daemon_refuses_to_start_with_a_bad_setting_and_names_it(
    tmp_path: Path, redis_url: str, names: Names
) -> None:
    env = daemon_env(redis_url, "http://127.0.0.1:9", names, EXECUTOR_QUEUE_SIZE="zero")
    started = time.monotonic()
    with daemon(tmp_path, env) as proc:
        code = proc.process.wait(timeout=30)
    assert code == 2
    assert time.monotonic() - started < 30
    out = proc.output().strip().splitlines()
    assert out[-1].startswith("executor: configuration error: EXECUTOR_QUEUE_SIZE:")


def test_demo_command_shows_every_outcome_and_exits_0(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXECUTOR_")}
    done = subprocess.run(
        [sys.executable, "-m", "executor", "demo"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env=env,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "outcomes: 14 accepted, 1 duplicate, 7 invalid" in done.stdout
    assert "orders at the simulator: 14, one for each accepted signal: yes" in done.stdout
    assert "dead letters: 7" in done.stdout
    assert "reduceonly: unknown field" in done.stdout
