"""Protections on real processes: key failover, the circuit breaker, the kill
switch and key rotation."""

from __future__ import annotations

import asyncio
import os
import signal as signals
import time
from collections import Counter
from pathlib import Path

import pytest
from redis.asyncio import Redis

from executor.bybit.sim_state import PRIMARY, SECONDARY
from executor.publish import publish
from tests.conftest import Names
from tests.e2e.procs import (
    Proc,
    daemon_env,
    executor_cli,
    scrape,
    sim_get,
    sim_orders,
    sim_post,
    simulator,
    start_daemon,
    until_started,
    value,
)
from tests.e2e.test_chaos import audit, wait_results
from tests.e2e.test_status import status_json
from tests.integration.helpers import eventually, read_stream, signal

pytestmark = pytest.mark.e2e


def with_secondary(env: dict[str, str]) -> dict[str, str]:
    return {
        **env,
        "EXECUTOR_SECONDARY_API_KEY": SECONDARY.api_key,
        "EXECUTOR_SECONDARY_API_SECRET": SECONDARY.secret,
    }


async def test_revoked_primary_fails_over_to_the_secondary_losing_and_doubling_nothing(
    tmp_path: Path, redis: Redis, redis_url: str, names: Names, fleet: list[Proc]
) -> None:
    total = 120
    with simulator(tmp_path, "--order-limit", "unlimited", "--ip-limit", "unlimited") as (_s, url):
        env = with_secondary(daemon_env(redis_url, url, names, EXECUTOR_RATE_LIMIT_PER_S="60"))
        proc = start_daemon(tmp_path, env, "failover")
        fleet.append(proc)
        sigs = [signal(f"fo-{i:03d}", id=f"fo-{i:03d}", ttl_ms=120_000) for i in range(total)]
        await publish(redis, names.stream, sigs)
        await wait_results(redis, names, 30)
        await sim_post(url, "/sim/keys/revoke", {"api_key": PRIMARY.api_key})
        await wait_results(redis, names, total)
        assert proc.stop() == 0
        statuses = await audit(redis, names, url, [str(s["id"]) for s in sigs])
        orders = await sim_orders(url)
    assert statuses == Counter({"accepted": total})
    by_key = Counter(str(o["apiKey"]) for o in orders)
    assert by_key[PRIMARY.api_key] >= 30 and by_key[SECONDARY.api_key] > 0
    # Once the first order reached the exchange on the secondary, every later one
    # did too (by the simulator's arrival stamps; results are written as answers
    # come back, and a create-batch answer can come back after a single order's).
    arrived = {key: [int(o["received_ns"]) for o in orders if o["apiKey"] == key]
               for key in (PRIMARY.api_key, SECONDARY.api_key)}  # fmt: skip
    assert max(arrived[PRIMARY.api_key]) < min(arrived[SECONDARY.api_key])
    results = await read_stream(redis, names.results)
    assert {r["key"] for r in results} == {"primary", "secondary"}
    failovers = [e for e in proc.events() if e.get("event") == "key.failover"]
    assert len(failovers) == 1
    assert failovers[0]["key"] == "secondary"
    assert "10003" in str(failovers[0]["reason"])


async def test_failback_probe_returns_to_the_primary_once_it_works_again(
    tmp_path: Path, redis: Redis, redis_url: str, names: Names, fleet: list[Proc]
) -> None:
    with simulator(tmp_path) as (_sim, url):
        env = with_secondary(daemon_env(redis_url, url, names, EXECUTOR_FAILBACK_PROBE_S="0.5"))
        proc = start_daemon(tmp_path, env, "failback")
        fleet.append(proc)
        await until_started(proc)  # both keys verified on one account: failover allowed
        await sim_post(url, "/sim/keys/revoke", {"api_key": PRIMARY.api_key})
        first = [signal(f"fb-a{i}", id=f"fb-a{i}") for i in range(5)]
        await publish(redis, names.stream, first)
        await wait_results(redis, names, 5)

        async def probed() -> bool:
            return any(e.get("event") == "key.probe_failed" for e in proc.events())

        await eventually(probed, within=10)  # the probe sees the primary still refused

        async def status_shows_failover() -> bool:  # records are refreshed every second
            [replica] = (await status_json({**os.environ, **env}))["replicas"]
            return (replica["active_key"], replica["failovers"], list(replica["failed_keys"])) == (
                "secondary",
                1,
                ["primary"],
            )

        await eventually(status_shows_failover, within=5)
        samples = await scrape(proc)
        assert value(samples, "executor_key_failovers_total") == 1
        assert value(samples, "executor_active_key", key="secondary") == 1
        assert value(samples, "executor_active_key", key="primary") == 0

        await sim_post(url, "/sim/keys/restore", {"api_key": PRIMARY.api_key})

        async def failed_back() -> bool:
            return any(e.get("event") == "key.failback" for e in proc.events())

        await eventually(failed_back, within=10)
        assert value(await scrape(proc), "executor_active_key", key="primary") == 1
        second = [signal(f"fb-b{i}", id=f"fb-b{i}") for i in range(5)]
        await publish(redis, names.stream, second)
        await wait_results(redis, names, 10)
        assert proc.stop() == 0
        statuses = await audit(redis, names, url, [str(s["id"]) for s in first + second])
        orders = {str(o["orderLinkId"]): str(o["apiKey"]) for o in await sim_orders(url)}
    assert statuses == Counter({"accepted": 10})
    assert {orders[f"fb-a{i}"] for i in range(5)} == {SECONDARY.api_key}
    assert {orders[f"fb-b{i}"] for i in range(5)} == {PRIMARY.api_key}
    [failback] = [e for e in proc.events() if e.get("event") == "key.failback"]
    assert failback["key"] == "primary"


async def test_breaker_opens_on_a_5xx_storm_sends_only_probes_then_closes(
    tmp_path: Path, redis: Redis, redis_url: str, names: Names, fleet: list[Proc]
) -> None:
    with simulator(tmp_path) as (_sim, url):
        # A signal whose lookups run out during the storm is left pending and
        # claimed again after CLAIM_IDLE_MS: short here so the test sees it.
        env = daemon_env(
            redis_url,
            url,
            names,
            EXECUTOR_BREAKER_FAILURES="5",
            EXECUTOR_BREAKER_COOLDOWN_S="2",
            EXECUTOR_CLAIM_IDLE_MS="2000",
            EXECUTOR_WORKERS="1",
        )
        proc = start_daemon(tmp_path, env, "breaker")
        fleet.append(proc)
        await until_started(proc)
        await sim_post(url, "/sim/faults", {"error_rate": 1.0})
        storm_began = time.monotonic()
        sigs = [signal(f"br-{i:02d}", id=f"br-{i:02d}", ttl_ms=120_000) for i in range(20)]
        await publish(redis, names.stream, sigs)

        async def opened() -> bool:
            return any(e.get("new") == "open" for e in proc.events())

        await eventually(opened, within=30)
        stats = (await sim_get(url, "/sim/stats"))["requests"]
        state_while_open = value(await scrape(proc), "executor_circuit_state")
        at_open = sum(stats.values())
        signed_before_open = sum(n for path, n in stats.items() if path.startswith("/v5/order/"))
        # The storm lasts 10 s in all; only probes may reach the exchange.
        await asyncio.sleep(storm_began + 10 - time.monotonic())
        during = sum((await sim_get(url, "/sim/stats"))["requests"].values()) - at_open
        probes = sum(1 for e in proc.events() if e.get("new") == "half_open")
        await sim_post(url, "/sim/faults", {"error_rate": 0.0})
        await wait_results(redis, names, 20, within=60)
        assert proc.stop() == 0
        statuses = await audit(redis, names, url, [str(s["id"]) for s in sigs])
    transitions = [(e["old"], e["new"]) for e in proc.events() if e.get("event") == "breaker.state"]
    assert signed_before_open == 5  # one worker: exactly the threshold, then nothing
    assert state_while_open in (1, 2)  # open, or half-open with its probe out
    assert probes >= 2
    assert during == probes  # every request while open was a probe
    assert transitions[0] == ("closed", "open")
    assert transitions[-1] == ("half_open", "closed")
    assert statuses == Counter({"accepted": 20})


async def test_kill_switch_halts_every_submission_and_resume_restores_it(
    tmp_path: Path, redis: Redis, redis_url: str, names: Names, fleet: list[Proc]
) -> None:
    with simulator(tmp_path) as (_sim, url):
        env = daemon_env(redis_url, url, names, EXECUTOR_HALT_KEY=f"{names.prefix}:halt")
        proc = start_daemon(tmp_path, env, "halt")
        fleet.append(proc)
        cli_env = {**os.environ, **env}
        assert (await executor_cli(cli_env, "halt", "exchange", "maintenance"))[0] == 0
        await asyncio.sleep(1.0)  # the promise: every replica within one second
        await publish(redis, names.stream, [signal(f"h-{i}") for i in range(5)])
        await wait_results(redis, names, 5)
        assert await sim_orders(url) == []
        assert (await executor_cli(cli_env, "resume"))[0] == 0
        await asyncio.sleep(1.0)
        await publish(redis, names.stream, [signal(f"r-{i}") for i in range(5)])
        await wait_results(redis, names, 10)
        orders = await sim_orders(url)
        assert proc.stop() == 0
    results = await read_stream(redis, names.results)
    assert sorted((r["id"], r["status"]) for r in results[:5]) == [
        (f"s-h-{i}", "halted") for i in range(5)
    ]
    assert all(r["ret_msg"] == "halted: exchange maintenance" for r in results[:5])
    assert {r["status"] for r in results[5:]} == {"accepted"}
    assert sorted(str(o["orderLinkId"]) for o in orders) == [f"s-r-{i}" for i in range(5)]


async def test_sighup_reloads_key_files_and_new_orders_use_the_new_key(
    tmp_path: Path, redis: Redis, redis_url: str, names: Names, fleet: list[Proc]
) -> None:
    key_file, secret_file = tmp_path / "api_key", tmp_path / "api_secret"
    key_file.write_text(PRIMARY.api_key + "\n")
    secret_file.write_text(PRIMARY.secret + "\n")
    with simulator(tmp_path) as (_sim, url):
        env = daemon_env(redis_url, url, names)
        env["EXECUTOR_PRIMARY_API_KEY_FILE"] = str(key_file)
        env["EXECUTOR_PRIMARY_API_SECRET_FILE"] = str(secret_file)
        proc = start_daemon(
            tmp_path,
            {**env, "EXECUTOR_PRIMARY_API_KEY": "", "EXECUTOR_PRIMARY_API_SECRET": ""},
            "rotate",
        )
        fleet.append(proc)
        await publish(redis, names.stream, [signal("before")])
        await wait_results(redis, names, 1)
        rotated = {
            "api_key": "SIMROTATEDKEY00001",
            "secret": "sim-rotated-secret-0001",
            "user_id": PRIMARY.user_id,
            "ips": ["127.0.0.1"],
        }
        await sim_post(url, "/sim/keys", rotated)
        key_file.write_text("SIMROTATEDKEY00001\n")
        secret_file.write_text("sim-rotated-secret-0001\n")
        proc.process.send_signal(signals.SIGHUP)

        async def reloaded() -> bool:
            return "keys.reloaded" in proc.output()

        await eventually(reloaded, within=20)
        await publish(redis, names.stream, [signal("after")])
        await wait_results(redis, names, 2)
        orders = {str(o["orderLinkId"]): str(o["apiKey"]) for o in await sim_orders(url)}
        assert proc.alive()
        assert proc.stop() == 0
    assert orders == {"s-before": PRIMARY.api_key, "s-after": "SIMROTATEDKEY00001"}
    output = proc.output()
    reloads = [e for e in proc.events() if e.get("event") == "keys.reloaded"]
    assert reloads[0]["keys"] == ["primary:SIMR…01"]  # the new key's fingerprint
    assert PRIMARY.secret not in output and "sim-rotated-secret-0001" not in output
