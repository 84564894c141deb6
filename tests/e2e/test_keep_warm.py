"""Quiet spells: the exchange closes idle connections (the simulator after 1 s,
as a load balancer does); a request for the server time every KEEP_WARM_S keeps
the daemon's connection open, so the next order does not wait for a new one."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from redis.asyncio import Redis

from executor.publish import publish
from tests.conftest import Names
from tests.e2e.procs import Proc, daemon_env, sim_get, simulator, start_daemon, until_started
from tests.e2e.test_chaos import wait_results
from tests.integration.helpers import read_stream, signal

pytestmark = pytest.mark.e2e

QUIET_S = 3.0  # three times the simulator's idle timeout


@pytest.mark.parametrize(("keep_warm", "new_connections"), [("0.2", 0), ("0", 1)])
async def test_an_order_after_a_quiet_spell_goes_out_on_the_connection_kept_warm(
    tmp_path: Path,
    redis: Redis,
    redis_url: str,
    names: Names,
    fleet: list[Proc],
    keep_warm: str,
    new_connections: int,
) -> None:
    with simulator(tmp_path, "--idle-timeout-s", "1") as (_sim, url):
        env = daemon_env(redis_url, url, names, EXECUTOR_KEEP_WARM_S=keep_warm)
        proc = start_daemon(tmp_path, env, "keep-warm")
        fleet.append(proc)
        await until_started(proc)
        before = await sim_get(url, "/sim/stats")
        await asyncio.sleep(QUIET_S)  # the quiet spell itself
        await publish(redis, names.stream, [signal("after-quiet", id="after-quiet")])
        await wait_results(redis, names, 1)
        after = await sim_get(url, "/sim/stats")
        assert proc.stop() == 0
    [result] = await read_stream(redis, names.results)
    assert result["status"] == "accepted"
    assert after["connections"] - before["connections"] == new_connections
    asked = after["requests"].get("/v5/market/time", 0) - before["requests"].get(
        "/v5/market/time", 0
    )
    if new_connections == 0:
        assert asked >= QUIET_S / 0.2 / 2  # about one per KEEP_WARM_S of quiet
    else:
        assert asked == 0
