"""The lean connection's encoder and reply parser, without a server: any run of
replies, cut into any chunks, comes out as the same values, in order."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError

from executor.resp import _Connection, _Target, encode

# What a reply can hold: bulk strings (with CR/LF inside), integers, nil, arrays.
values = st.recursive(
    st.binary(max_size=40) | st.integers(-(2**63), 2**63 - 1) | st.none(),
    lambda inner: st.lists(inner, max_size=5),
    max_leaves=20,
)


def wire(value: Any) -> bytes:
    if value is None:
        return b"$-1\r\n"
    if isinstance(value, bytes):
        return b"$%d\r\n%s\r\n" % (len(value), value)
    if isinstance(value, int):
        return b":%d\r\n" % value
    return b"*%d\r\n" % len(value) + b"".join(wire(item) for item in value)


class Wire:
    """The connection's transport: keeps what is written."""

    def __init__(self) -> None:
        self.written: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def close(self) -> None:
        pass


def feed(replies: list[bytes], cuts: list[int]) -> list[asyncio.Future[Any]]:
    """Feed the replies to a connection with one call waiting per reply, cut at ``cuts``."""

    async def run() -> list[asyncio.Future[Any]]:
        conn = _Connection()
        conn.transport = Wire()  # type: ignore[assignment]
        futures = [conn.send(encode([b"PING"])) for _ in replies]
        data = b"".join(replies)
        edges = [0, *sorted({c % (len(data) + 1) for c in cuts}), len(data)]
        for start, stop in itertools.pairwise(edges):
            conn.data_received(data[start:stop])
        return futures

    return asyncio.run(run())


@given(st.lists(values, min_size=1, max_size=8), st.lists(st.integers(0, 10_000), max_size=30))
def test_replies_cut_anywhere_come_out_whole_and_in_order(
    replies: list[Any], cuts: list[int]
) -> None:
    futures = feed([wire(v) for v in replies], cuts)
    assert [f.result() for f in futures] == replies


def test_every_reply_kind() -> None:
    futures = feed(
        [b"+OK\r\n", b"-ERR wrong type\r\n", b"-NOSCRIPT no script\r\n", b"*-1\r\n", b"*0\r\n"], []
    )
    assert futures[0].result() == b"OK"
    assert isinstance(futures[1].exception(), ResponseError)
    assert str(futures[1].exception()) == "ERR wrong type"
    assert isinstance(futures[2].exception(), NoScriptError)
    assert futures[3].result() is None
    assert futures[4].result() == []


def test_garbage_fails_the_waiting_calls() -> None:
    futures = feed([b"?what\r\n", b":1\r\n"], [])
    assert all(isinstance(f.exception(), RedisConnectionError) for f in futures)


def test_a_reply_nobody_asked_for_fails_the_connection() -> None:
    loop = asyncio.new_event_loop()
    try:
        conn = _Connection()
        conn.data_received(b":1\r\n")
        assert isinstance(conn.lost, RedisConnectionError)
    finally:
        loop.close()


def test_arguments_are_encoded_as_bulk_strings() -> None:
    assert encode([b"SET", "clé", 7, 0.5]) == (
        b"*4\r\n$3\r\nSET\r\n$4\r\ncl\xc3\xa9\r\n$1\r\n7\r\n$3\r\n0.5\r\n"
    )
    with pytest.raises(TypeError, match="bool"):
        encode([True])
    with pytest.raises(TypeError, match="dict"):
        encode([{}])  # type: ignore[list-item]


@pytest.mark.parametrize(
    ("url", "where"),
    [
        ("redis://localhost:6379/0", ("localhost", 6379, None, None, 0, False)),
        ("redis://:p%40ss@db.internal:6380/2", ("db.internal", 6380, None, "p@ss", 2, False)),
        ("redis://bot:pw@10.0.0.5?db=4", ("10.0.0.5", 6379, "bot", "pw", 4, False)),
        ("rediss://redis.example:6390/1", ("redis.example", 6390, None, None, 1, True)),
        ("unix:///run/redis.sock?db=5", ("/run/redis.sock", None, None, None, 5, False)),
    ],
)
def test_urls(url: str, where: tuple[Any, ...]) -> None:
    target = _Target.parse(url)
    place = (target.path, None) if target.path else (target.host, target.port)
    got = (*place, target.username, target.password, target.db, target.tls is not None)
    assert got == where
