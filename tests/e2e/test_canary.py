"""No secret leaves the process: recognisable fake secrets are run through
errors, retries, failover, rotation, dropped Redis connections and debug
logging, then looked for everywhere an operator (or an attacker) could read:
logs, results, dead letters, every value in Redis, /healthz, /readyz, /metrics
and the commands' output."""

from __future__ import annotations

import signal as signals
from collections import Counter
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis

from executor.publish import publish
from executor.redis_server import RedisProcess, free_port
from tests.conftest import Names
from tests.e2e.procs import Proc, daemon_env, executor_cli, sim_post, simulator, start_daemon
from tests.e2e.test_chaos import audit, wait_results
from tests.integration.helpers import eventually, read_stream, signal

pytestmark = pytest.mark.e2e

UID = "5550001"
PRIMARY_KEY, SECONDARY_KEY, ROTATED_KEY = (
    "CANARYPRIMKEY0001",
    "CANARYSCNDKEY0001",
    "CANARYROTKEY00001",
)
CANARIES = {
    "primary API secret": "canary-prim-secret-6b1f0e",
    "secondary API secret": "canary-scnd-secret-3c9a77",
    "rotated API secret": "canary-rot-secret-d41e08",
    "publisher secret k1": "canary-pub-one-8e2b55",
    "publisher secret k2": "canary-pub-two-19f0c4",
    "Redis password": "canary-redis-pw-a7c3d1",
    "wrong Redis password": "canary-wrong-pw-77b2e0",
}


def leaks(text: str) -> list[str]:
    return [name for name, value in CANARIES.items() if value in text]


async def everything_in(redis: Redis) -> str:
    """Every key and value in the test's private Redis, as text."""
    parts = []
    async for key in redis.scan_iter(count=500):
        kind = (await redis.type(key)).decode()
        parts.append(key.decode(errors="replace"))
        if kind == "string":
            parts.append(repr(await redis.get(key)))
        elif kind == "stream":
            parts.append(repr(await redis.xrange(key)))
        elif kind == "hash":
            parts.append(repr(await redis.hgetall(key)))
        elif kind in ("list", "set", "zset"):
            parts.append(repr(await redis.dump(key)))
    return "\n".join(parts)


async def test_canary_secrets_appear_in_no_log_result_dead_letter_redis_value_or_endpoint(
    tmp_path: Path, names: Names, fleet: list[Proc]
) -> None:
    server = RedisProcess(free_port(), tmp_path / "redis", False, CANARIES["Redis password"])
    server.directory.mkdir()
    server.start()
    redis = Redis.from_url(server.url)
    key_file, secret_file = tmp_path / "primary_key", tmp_path / "primary_secret"
    key_file.write_text(PRIMARY_KEY)
    secret_file.write_text(CANARIES["primary API secret"])
    sim_keys = [
        f"{PRIMARY_KEY}:{CANARIES['primary API secret']}:{UID}",
        f"{SECONDARY_KEY}:{CANARIES['secondary API secret']}:{UID}",
    ]
    sim_flags = [f"--key={spec}" for spec in sim_keys]
    sim_flags += ["--order-limit", "unlimited", "--error-rate", "0.2", "--lose-rate", "0.05"]
    sim_flags += ["--seed", "7"]
    published: list[str] = []
    try:
        with simulator(tmp_path, *sim_flags) as (_sim, url):
            env = daemon_env(
                server.url,
                url,
                names,
                EXECUTOR_PRIMARY_API_KEY_FILE=str(key_file),
                EXECUTOR_PRIMARY_API_SECRET_FILE=str(secret_file),
                EXECUTOR_PRIMARY_API_KEY="",
                EXECUTOR_PRIMARY_API_SECRET="",
                EXECUTOR_SECONDARY_API_KEY=SECONDARY_KEY,
                EXECUTOR_SECONDARY_API_SECRET=CANARIES["secondary API secret"],
                EXECUTOR_SIGNAL_SECRETS=(
                    f"k1={CANARIES['publisher secret k1']},k2={CANARIES['publisher secret k2']}"
                ),
                EXECUTOR_LOG_LEVEL="debug",
                EXECUTOR_REQUEST_TIMEOUT_S="1",
                EXECUTOR_CLAIM_IDLE_MS="2000",
                EXECUTOR_BREAKER_COOLDOWN_S="0.5",
                EXECUTOR_FAILBACK_PROBE_S="0.5",
                EXECUTOR_RATE_LIMIT_PER_S="100",
            )
            proc = start_daemon(tmp_path, env, "canary")
            fleet.append(proc)

            async def batch(prefix: str, count: int, kid: str) -> None:
                sigs = [
                    signal(f"{prefix}{i}", id=f"{prefix}{i}", ttl_ms=120_000) for i in range(count)
                ]
                secret = CANARIES[f"publisher secret {kid}"]
                await publish(redis, names.stream, sigs, secret=secret, kid=kid)
                published.extend(str(s["id"]) for s in sigs)

            # Errors and retries (injected 5xx and lost answers), bad signatures,
            # unsigned and invalid signals.
            await batch("c-a", 20, "k1")
            await publish(redis, names.stream, [signal("forged")], secret="not-it", kid="k1")
            await publish(redis, names.stream, [signal("unsigned")])
            await publish(
                redis,
                names.stream,
                [signal("neg", qty="-1")],
                secret=CANARIES["publisher secret k2"],
                kid="k2",
            )
            published.extend(["s-forged", "s-unsigned", "s-neg"])
            await wait_results(redis, names, len(published))

            # Failover: the primary is revoked; the probe keeps failing on it.
            await sim_post(url, "/sim/keys/revoke", {"api_key": PRIMARY_KEY})
            await batch("c-b", 10, "k2")
            await wait_results(redis, names, len(published))

            # Dropped Redis connections: the daemon reconnects with its password.
            await redis.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
            # Rotation: a new primary key from the files, on SIGHUP.
            await sim_post(
                url,
                "/sim/keys",
                {"api_key": ROTATED_KEY, "secret": CANARIES["rotated API secret"], "user_id": UID},
            )
            key_file.write_text(ROTATED_KEY)
            secret_file.write_text(CANARIES["rotated API secret"])
            proc.process.send_signal(signals.SIGHUP)

            async def reloaded() -> bool:
                return "keys.reloaded" in proc.output()

            await eventually(reloaded, within=20)
            await batch("c-c", 10, "k1")
            await wait_results(redis, names, len(published))

            async with httpx.AsyncClient(base_url=proc.health_url) as health:
                paths = ("/healthz", "/readyz", "/metrics")
                endpoints = [(await health.get(path)).text for path in paths]
            status_code, status_out, status_err = await executor_cli(env, "status", "--json")
            keys_code, keys_out, keys_err = await executor_cli(env, "keys")
            assert proc.stop() == 0
            statuses = await audit(redis, names, url, published, {"accepted", "invalid"})

            # A daemon given the wrong Redis password says so, without the password.
            wrong = server.url.replace(CANARIES["Redis password"], CANARIES["wrong Redis password"])
            refused = start_daemon(tmp_path, {**env, "EXECUTOR_REDIS_URL": wrong}, "wrong-pw")
            fleet.append(refused)

            async def complained() -> bool:
                return "redis.unavailable" in refused.output()

            await eventually(complained, within=20)
            assert refused.stop() == 0
            wrong_code, wrong_out, wrong_err = await executor_cli(
                {**env, "EXECUTOR_REDIS_URL": wrong}, "status"
            )

        results = await read_stream(redis, names.results)
        dead = await read_stream(redis, names.dead)
        stored = await everything_in(redis)
    finally:
        await redis.aclose()
        server.stop()

    # The scenario really went through the paths it claims to.
    seen = Counter(str(e.get("event")) for e in proc.events())
    assert seen["key.failover"] == 1 and seen["keys.reloaded"] == 1
    assert seen["redis.unavailable"] >= 1 and seen["exchange.request"] > 40  # debug lines
    assert any(int(r["attempts"] or 0) > 1 for r in results)  # retried after injected faults
    assert Counter(str(d["kind"]) for d in dead) == Counter({"unauthenticated": 2, "invalid": 1})
    assert statuses["accepted"] == 40
    assert status_code == 0 and keys_code in (0, 1) and wrong_code == 1
    assert "executor_key_failovers_total 1.0" in endpoints[2]

    sinks = {
        "daemon log": proc.output(),
        "wrong-password daemon log": refused.output(),
        "results stream": repr(results),
        "dead letters": repr(dead),
        "everything in Redis": stored,
        "/healthz, /readyz and /metrics": "\n".join(endpoints),
        "executor status": status_out + status_err + wrong_out + wrong_err,
        "executor keys": keys_out + keys_err,
    }
    assert {sink: leaks(text) for sink, text in sinks.items() if leaks(text)} == {}
    # Full API keys stay out of logs too: only fingerprints are shown.
    assert PRIMARY_KEY not in proc.output() and ROTATED_KEY not in proc.output()
