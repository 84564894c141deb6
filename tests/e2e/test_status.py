"""`executor status` as an operator runs it, against a running daemon."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from executor.bybit.sim_state import PRIMARY
from executor.publish import publish
from executor.redis_server import free_port
from tests.conftest import Names
from tests.e2e.procs import Proc, daemon_env, executor_cli, simulator, start_daemon
from tests.e2e.test_chaos import wait_results
from tests.integration.helpers import eventually, signal

pytestmark = pytest.mark.e2e


async def status(env: dict[str, str], *flags: str) -> tuple[int, str, str]:
    return await executor_cli(env, "status", *flags)


async def status_json(env: dict[str, str]) -> dict[str, Any]:
    code, out, err = await status(env, "--json")
    assert code == 0, err
    report = json.loads(out)
    assert isinstance(report, dict)
    return report


async def test_status_shows_streams_group_replicas_dead_letters_and_outcomes(
    tmp_path: Path, redis: Redis, redis_url: str, names: Names, fleet: list[Proc]
) -> None:
    halt_key = f"{names.prefix}:halt"
    env = daemon_env(redis_url, "http://127.0.0.1:9", names, EXECUTOR_HALT_KEY=halt_key)
    code, out, _err = await status(env)
    assert code == 0
    assert f"stream {names.stream}: 0 entries" in out
    assert "group: not created yet" in out
    assert "replicas running: 0" in out

    with simulator(tmp_path) as (_sim, url):
        env = daemon_env(
            redis_url, url, names, EXECUTOR_HALT_KEY=halt_key, EXECUTOR_CONSUMER="replica-a"
        )
        fleet.append(start_daemon(tmp_path, env))
        good = [signal(f"st-{i}", id=f"st-{i}") for i in range(5)]
        await publish(redis, names.stream, [*good, b"not json", signal("st-bad", qty="-1")])
        await wait_results(redis, names, 7)

        report = await status_json(env)
        stream = report["stream"]
        assert stream["length"] == 7
        assert stream["group"]["pending"] == 0 and stream["group"]["lag"] == 0
        assert [c["name"] for c in stream["group"]["consumers"]] == ["replica-a"]
        assert report["dead_letters"]["length"] == 2
        assert report["dead_letters"]["recent_by_kind"] == {"invalid": 2}
        assert report["results"]["recent_by_status"] == {"accepted": 5, "invalid": 2}
        assert {r["id"] for r in report["results"]["last"][:7]} >= {f"st-{i}" for i in range(5)}
        assert report["halt"] is None
        [replica] = report["replicas"]
        assert replica["consumer"] == "replica-a"
        assert replica["breaker"] == "closed"
        assert replica["active_key"] == "primary"
        assert replica["fingerprint"] == f"{PRIMARY.api_key[:4]}…{PRIMARY.api_key[-2:]}"
        assert replica["queue_capacity"] == 1000 and replica["queue_depth"] == 0

        await redis.set(halt_key, "exchange maintenance")
        code, out, _err = await status(env)
        assert code == 0
        assert "kill switch: ON: exchange maintenance" in out
        assert "replicas running: 1" in out
        assert "replica-a, breaker closed, key primary" in out
        assert "dead letters" in out and "2 invalid" in out
        assert "5 accepted, 2 invalid" in out
        assert PRIMARY.secret not in out

        probe_env = {**env, "EXECUTOR_METRICS_PORT": fleet[0].env["EXECUTOR_METRICS_PORT"]}
        assert (await executor_cli(probe_env, "check"))[0] == 0
        code, out, _err = await executor_cli(probe_env, "check", "--ready")
        assert code == 0 and '"ready"' in out
        assert fleet[0].stop() == 0
        code, _out, err = await executor_cli(probe_env, "check")
        assert code == 1 and "did not answer" in err

    async def gone() -> bool:
        return not (await status_json(env))["replicas"]

    await eventually(gone, within=5)  # cleared at stop, not left to expire


async def test_status_says_when_redis_is_unreachable(names: Names) -> None:
    env = daemon_env(f"redis://:pw-canary@127.0.0.1:{free_port()}/0", "http://127.0.0.1:9", names)
    code, out, err = await status(env)
    assert code == 1
    assert "Redis unreachable" in err
    assert "pw-canary" not in out + err


async def test_probes_answer_during_start_up_and_sigterm_then_exits_at_once(
    tmp_path: Path, redis_url: str, names: Names, fleet: list[Proc]
) -> None:
    # Every exchange answer takes 5 s: the clock and key checks are slow.
    with simulator(tmp_path, "--latency-ms", "5000") as (_sim, url):
        proc = start_daemon(tmp_path, daemon_env(redis_url, url, names))
        fleet.append(proc)
        async with httpx.AsyncClient(base_url=proc.health_url, timeout=2) as health:

            async def answering() -> bool:
                try:
                    return (await health.get("/healthz")).status_code == 200
                except httpx.TransportError:
                    return False

            await eventually(answering, within=20)
            ready = await health.get("/readyz")
        assert "daemon.started" not in proc.output()
        asked = time.monotonic()
        assert proc.stop(timeout=10) == 0
        took = time.monotonic() - asked
    assert ready.status_code == 503
    assert ready.json()["problems"]["start"].startswith("starting")
    assert took < 5  # did not wait for the slow answer it was waiting on
    assert "daemon.stopped_while_starting" in proc.output()
