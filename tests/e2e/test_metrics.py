"""The daemon's /metrics as Prometheus scrapes it, after real traffic."""

from __future__ import annotations

import asyncio
import shutil
import time
from asyncio.subprocess import PIPE, STDOUT
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis

from executor.bybit.sim_state import PRIMARY
from executor.publish import publish
from tests.conftest import Names
from tests.e2e.procs import Proc, daemon_env, scrape, sim_post, simulator, start_daemon, value
from tests.e2e.test_chaos import wait_results
from tests.integration.helpers import eventually, signal

pytestmark = pytest.mark.e2e

DAY_MS = 86_400_000


async def test_metrics_count_what_happened_and_describe_the_state(
    tmp_path: Path, redis: Redis, redis_url: str, names: Names, fleet: list[Proc]
) -> None:
    with simulator(tmp_path) as (_sim, url):
        # A key that expires in 10 days, on the primary's account.
        expiring = {
            "api_key": "SIMEXPIRINGKEY0001",
            "secret": "sim-expiring-secret-01",
            "user_id": PRIMARY.user_id,
            "expires_at_ms": int(time.time() * 1000) + 10 * DAY_MS,
        }
        await sim_post(url, "/sim/keys", expiring)
        # One create request per order, so the per-endpoint counts below are per order.
        env = daemon_env(redis_url, url, names, EXECUTOR_QUEUE_SIZE="50",
                         EXECUTOR_BATCH_ORDERS="false",
                         EXECUTOR_SECONDARY_API_KEY=expiring["api_key"],
                         EXECUTOR_SECONDARY_API_SECRET=expiring["secret"])  # fmt: skip
        proc = start_daemon(tmp_path, env, "metrics")
        fleet.append(proc)
        good = [signal(f"m-{i}", id=f"m-{i}") for i in range(9)]
        good.append(signal("m-9", id="m-9", strategy="trend"))
        await publish(redis, names.stream, [*good, good[0], b"{broken", signal("neg", qty="-1")])
        await wait_results(redis, names, 13)

        async def stream_settled() -> bool:  # read every few seconds
            samples = await scrape(proc)
            return (
                value(samples, "executor_stream_lag") == 0
                and value(samples, "executor_stream_pending") == 0
            )

        await eventually(stream_settled, within=15)
        samples = await scrape(proc)
        async with httpx.AsyncClient() as client:
            text = (await client.get(f"{proc.health_url}/metrics")).text
        assert proc.stop() == 0

    def v(name: str, **labels: str) -> float | None:
        return value(samples, name, **labels)

    def signals(outcome: str, strategy: str = "") -> float | None:
        return v("executor_signals_total", outcome=outcome, strategy=strategy, source="")

    assert signals("accepted") == 9 and signals("accepted", "trend") == 1
    assert signals("duplicate") == 1
    assert signals("invalid") == 2
    assert signals("failed") == 0  # present from the start
    assert v("executor_dead_letters_total", reason="invalid") == 2
    assert v("executor_orders_total", result="accepted", ret_code="0") == 10
    assert v("executor_signal_to_send_seconds_count") == 10
    assert v("executor_rate_limit_wait_seconds_count") == 10
    assert v("executor_exchange_request_seconds_count", endpoint="/v5/order/create") == 10
    assert v("executor_queue_capacity") == 50 and v("executor_queue_depth") == 0
    assert v("executor_circuit_state") == 0
    assert v("executor_active_key", key="primary") == 1
    assert v("executor_active_key", key="secondary") == 0
    assert v("executor_key_failovers_total") == 0
    assert v("executor_api_key_expiry_seconds", key="primary") is None  # never expires
    left = v("executor_api_key_expiry_seconds", key="secondary")
    assert left is not None and 9.9 * 86_400 < left <= 10 * 86_400
    assert v("executor_redis_up") == 1 and v("executor_halted") == 0
    clock = v("executor_clock_offset_seconds")
    assert clock is not None and abs(clock) < 1
    assert [labels for (name, labels) in samples if name == "executor_build_info"]
    # No signal id ever becomes a label.
    assert not [key for key in samples if any("m-" in value for _l, value in key[1])]

    promtool = shutil.which("promtool")
    assert promtool is not None, "promtool is installed by the test set-up"
    lint = await asyncio.create_subprocess_exec(
        promtool, "check", "metrics", stdin=PIPE, stdout=PIPE, stderr=STDOUT
    )
    out, _ = await lint.communicate(text.encode())
    assert (lint.returncode, out.decode()) == (0, "")
