"""Concurrent calls of one script share round trips, and each gets its own
reply or error, through a lost script cache and a cancelled sender."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from executor.coalesce import CoalescedScript
from executor.redis_server import free_port
from tests.conftest import Names

# Appends ARGV[1] to a list and returns its position; 'boom' is a script error.
APPEND = """
if ARGV[1] == 'boom' then return redis.error_reply('boom') end
return redis.call('RPUSH', KEYS[1], ARGV[1])
"""


class Counted(CoalescedScript):
    """Counts round trips and their sizes."""

    def __init__(self, redis: Redis) -> None:
        super().__init__(redis, APPEND, max_batch=50)
        self.trips: list[int] = []

    async def _pipeline(self, batch: list[Any]) -> list[Any]:
        self.trips.append(len(batch))
        return await super()._pipeline(batch)


async def test_concurrent_calls_share_round_trips_and_each_gets_its_reply(
    redis: Redis, names: Names
) -> None:
    script = Counted(redis)
    key = f"{names.prefix}:list"
    await script([f"{names.prefix}:warm"], ["loads the script"])
    script.trips.clear()
    replies = await asyncio.gather(*(script([key], [f"v{i}"]) for i in range(200)))
    assert sorted(replies) == list(range(1, 201))
    assert sum(script.trips) == 200 and max(script.trips) <= 50
    assert len(script.trips) < 20  # the first goes alone, the rest in shared trips
    stored = await redis.lrange(key, 0, -1)
    assert [stored[r - 1] for r in replies] == [f"v{i}".encode() for i in range(200)]


async def test_a_lone_call_goes_at_once(redis: Redis, names: Names) -> None:
    script = Counted(redis)
    assert await script([f"{names.prefix}:list"], ["x"]) == 1
    assert script.trips == [1]


async def test_one_call_failing_does_not_fail_the_others(redis: Redis, names: Names) -> None:
    script = CoalescedScript(redis, APPEND)
    key = f"{names.prefix}:list"
    results = await asyncio.gather(
        *(script([key], ["boom" if i == 3 else str(i)]) for i in range(6)),
        return_exceptions=True,
    )
    assert isinstance(results[3], ResponseError)
    assert sorted(r for r in results if isinstance(r, int)) == [1, 2, 3, 4, 5]


async def test_a_flushed_script_cache_is_reloaded(redis: Redis, names: Names) -> None:
    script = CoalescedScript(redis, APPEND)
    key = f"{names.prefix}:list"
    assert await script([key], ["a"]) == 1
    await redis.script_flush()
    assert sorted(await asyncio.gather(*(script([key], [str(i)]) for i in range(5)))) == [
        2, 3, 4, 5, 6
    ]  # fmt: skip
    await redis.script_flush()
    assert await script([key], ["z"]) == 7


async def test_a_cancelled_sender_fails_its_trip_and_hands_the_next_one_on(
    redis: Redis, names: Names
) -> None:
    script = CoalescedScript(redis, APPEND)
    key = f"{names.prefix}:list"
    sender = asyncio.create_task(script([key], ["first"]))
    await asyncio.sleep(0)  # the sender is on its round trip
    waiting = [asyncio.create_task(script([key], [str(i)])) for i in range(3)]
    await asyncio.sleep(0)
    sender.cancel()
    with pytest.raises(asyncio.CancelledError):
        await sender
    # The calls queued behind the abandoned trip are sent by one of their own;
    # whether the abandoned one ran is unknown, as after a lost connection.
    replies = sorted(await asyncio.gather(*waiting))
    assert replies in ([1, 2, 3], [2, 3, 4])
    assert await script([key], ["after"]) == replies[-1] + 1


async def test_redis_down_fails_every_call_of_the_trip(names: Names) -> None:
    down = Redis(port=free_port(), socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0))
    script = CoalescedScript(down, APPEND)
    results = await asyncio.gather(
        *(script([f"{names.prefix}:list"], [str(i)]) for i in range(4)), return_exceptions=True
    )
    assert all(isinstance(r, RedisConnectionError | OSError) for r in results)
    await down.aclose()
