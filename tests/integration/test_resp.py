"""The lean connection against a real Redis: concurrent calls on one socket each
get their own reply, through script errors, a lost script cache, a cancelled
caller, a killed connection, a timeout and a Redis that is not there; reads
answer exactly as redis-py's do."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from executor.redis_server import free_port, wait_for_port
from executor.resp import Lean
from tests.conftest import Names

# Appends ARGV[1] to a list and returns its position; 'boom' is a script error.
APPEND = """
if ARGV[1] == 'boom' then return redis.error_reply('boom') end
return redis.call('RPUSH', KEYS[1], ARGV[1])
"""


@pytest.fixture
async def lean(redis_url: str) -> AsyncIterator[Lean]:
    client = Lean(redis_url)
    yield client
    await client.aclose()


async def test_concurrent_calls_share_one_connection_and_each_gets_its_reply(
    lean: Lean, redis: Redis, names: Names
) -> None:
    script = lean.register_script(APPEND)
    key = f"{names.prefix}:list"
    replies = await asyncio.gather(*(script(keys=[key], args=[f"v{i}"]) for i in range(300)))
    assert sorted(replies) == list(range(1, 301))
    stored = await redis.lrange(key, 0, -1)
    assert [stored[r - 1] for r in replies] == [f"v{i}".encode() for i in range(300)]
    ids = await asyncio.gather(*(lean.execute("CLIENT", "ID") for _ in range(20)))
    assert len(set(ids)) == 1


async def test_one_call_failing_does_not_fail_the_others(lean: Lean, names: Names) -> None:
    script = lean.register_script(APPEND)
    key = f"{names.prefix}:list"
    results = await asyncio.gather(
        *(script(keys=[key], args=["boom" if i == 3 else str(i)]) for i in range(6)),
        return_exceptions=True,
    )
    assert isinstance(results[3], ResponseError) and "boom" in str(results[3])
    assert sorted(r for r in results if isinstance(r, int)) == [1, 2, 3, 4, 5]


async def test_a_flushed_script_cache_is_loaded_again(
    lean: Lean, redis: Redis, names: Names
) -> None:
    script = lean.register_script(APPEND)
    key = f"{names.prefix}:list"
    assert await script(keys=[key], args=["a"]) == 1
    await redis.script_flush()
    assert sorted(await asyncio.gather(*(script(keys=[key], args=[str(i)]) for i in range(5)))) == [
        2, 3, 4, 5, 6
    ]  # fmt: skip
    assert (await redis.script_exists(script.sha)) == [True]


async def test_a_cancelled_caller_leaves_the_replies_in_step(lean: Lean, names: Names) -> None:
    key = f"{names.prefix}:list"
    await lean.execute("PING")  # connected: a call is written as soon as it is made
    first = asyncio.create_task(lean.execute("RPUSH", key, "first"))
    await asyncio.sleep(0)  # written, reply not read yet
    behind = [asyncio.create_task(lean.execute("RPUSH", key, str(i))) for i in range(3)]
    await asyncio.sleep(0)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    # The cancelled call ran (it was written); its reply is read and dropped,
    # and each later call still gets its own.
    assert await asyncio.gather(*behind) == [2, 3, 4]
    assert await lean.execute("LRANGE", key, 0, -1) == [b"first", b"0", b"1", b"2"]


async def test_a_killed_connection_fails_its_calls_and_the_next_call_reconnects(
    lean: Lean, redis: Redis, names: Names
) -> None:
    before = await lean.execute("CLIENT", "ID")
    key = f"{names.prefix}:list"
    # A call parked on the connection when it dies fails; it does not hang.
    parked = asyncio.create_task(lean.execute("BLPOP", key, 5, blocks_s=5))
    await asyncio.sleep(0.05)
    await redis.client_kill_filter(_id=before)
    with pytest.raises(RedisConnectionError):
        await parked
    after = await lean.execute("CLIENT", "ID")
    assert after != before
    assert await lean.execute("RPUSH", key, "x") == 1


async def test_a_call_past_its_timeout_closes_the_connection(redis_url: str, names: Names) -> None:
    lean = Lean(redis_url, timeout_s=0.2)
    try:
        before = await lean.execute("CLIENT", "ID")
        with pytest.raises(RedisTimeoutError):
            await lean.execute("BLPOP", f"{names.prefix}:never", 2)
        # Its reply could still come, on a connection nobody reads any more.
        assert await lean.execute("CLIENT", "ID") != before
    finally:
        await lean.aclose()


async def test_redis_not_there_fails_every_call_at_once() -> None:
    lean = Lean(f"redis://127.0.0.1:{free_port()}/0", connect_timeout_s=1)
    results = await asyncio.gather(
        *(lean.execute("PING") for _ in range(4)), return_exceptions=True
    )
    assert all(isinstance(r, RedisConnectionError) for r in results), results
    assert all("127.0.0.1" in str(r) for r in results)
    await lean.aclose()


async def test_a_closed_connection_takes_no_more_calls(redis_url: str) -> None:
    lean = Lean(redis_url)
    assert await lean.execute("PING") == b"PONG"
    await lean.aclose()
    with pytest.raises(RedisConnectionError, match="closed"):
        await lean.execute("PING")


async def test_the_url_picks_the_database_and_logs_in(redis_url: str, redis: Redis) -> None:
    host, port = (
        redis.connection_pool.connection_kwargs["host"],
        redis.connection_pool.connection_kwargs["port"],
    )
    user, password = f"t-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    await redis.execute_command("ACL", "SETUSER", user, "on", f">{password}", "~*", "+@all")
    key = f"t-{uuid.uuid4().hex[:10]}:db"
    try:
        lean = Lean(f"redis://{user}:{password}@{host}:{port}/3")
        assert await lean.execute("SET", key, "three") == b"OK"
        assert await lean.execute("ACL", "WHOAMI") == user.encode()
        await lean.aclose()
        in_db3 = Redis(host=host, port=port, db=3)
        assert await in_db3.get(key) == b"three"
        assert await redis.get(key) is None  # not in db 0
        await in_db3.delete(key)
        await in_db3.aclose()
        wrong = Lean(f"redis://{user}:not-{password}@{host}:{port}/0")
        with pytest.raises(ResponseError, match="WRONGPASS"):
            await wrong.execute("PING")
        await wrong.aclose()
    finally:
        await redis.execute_command("ACL", "DELUSER", user)


async def test_reads_answer_as_redis_py_does_even_in_many_pieces(
    lean: Lean, redis: Redis, names: Names
) -> None:
    await redis.xgroup_create(names.stream, "g", id="0", mkstream=True)
    big = b"x" * 60_000  # 100 entries of 60 kB: the reply comes in many chunks
    for i in range(100):
        await redis.xadd(names.stream, {b"signal": big + str(i).encode(), b"n": str(i)})
    reply = await lean.xreadgroup("g", "c", {names.stream: ">"}, count=100, block=100)
    expected = await redis.xrange(names.stream)
    assert reply is not None
    assert reply[0][0] == names.stream.encode()
    assert reply[0][1] == expected
    # An entry deleted while pending comes back without its fields, as in redis-py.
    gone = expected[0][0]
    await redis.xdel(names.stream, gone)
    again = await lean.xreadgroup("g", "c", {names.stream: "0"}, count=1)
    assert again == await redis.xreadgroup("g", "c", {names.stream: "0"}, count=1)
    assert again is not None and again[0][1] == [(gone, {})]
    # Nothing new within the block time: None, as redis-py answers.
    assert await lean.xreadgroup("g", "c", {names.stream: ">"}, count=10, block=20) is None


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """A redis-server that speaks only TLS, with a self-signed certificate for
    127.0.0.1: (its port, the certificate)."""
    server, openssl = shutil.which("redis-server"), shutil.which("openssl")
    if server is None or openssl is None:
        pytest.skip("needs redis-server and openssl on PATH")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    port = free_port()
    process = subprocess.Popen(
        [server, "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
         "--tls-cert-file", str(cert), "--tls-key-file", str(key),
         "--tls-auth-clients", "no", "--save", "", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for_port(port, process=process)
        yield port, cert
    finally:
        process.terminate()
        process.wait(timeout=10)


async def test_rediss_verifies_the_server_certificate(tls_redis: tuple[int, Path]) -> None:
    port, cert = tls_redis
    trusted = Lean(f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={cert}")
    assert await trusted.execute("PING") == b"PONG"
    await trusted.aclose()
    unknown = Lean(f"rediss://127.0.0.1:{port}/0")  # the system's CAs do not know it
    with pytest.raises(RedisConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
        await unknown.execute("PING")
    await unknown.aclose()
    unchecked = Lean(f"rediss://127.0.0.1:{port}/0?ssl_cert_reqs=none")
    assert await unchecked.execute("PING") == b"PONG"
    await unchecked.aclose()
