"""Crash recovery on a real Redis: orphaned entries are claimed, live ones are not,
and an entry never gets two results."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

from executor.intake import Intake
from executor.publish import publish
from tests.conftest import Names
from tests.integration.helpers import (
    GatedSubmitter,
    eventually,
    make_pipeline,
    read_stream,
    signal,
)


async def test_entries_of_a_dead_consumer_are_claimed_and_finished(
    redis: Redis, names: Names
) -> None:
    dead = make_pipeline(redis, names.stream, names.results, names.dead, consumer="dead")
    await dead.intake.ensure_group()
    ids = await publish(redis, names.stream, [signal(i) for i in range(6)])
    # The dead consumer read everything and had sent s-0 (its dedup record says so).
    entries = await dead.intake.read(10, 50)
    assert [e.id for e in entries] == ids
    await dead.dedup.claim("s-0", ids[0])

    survivor_calls = GatedSubmitter()
    survivor = make_pipeline(redis, names.stream, names.results, names.dead,
                             consumer="alive", submitter=survivor_calls)  # fmt: skip
    survivor._claim_idle_ms = 1000
    stop = asyncio.Event()
    run = asyncio.create_task(survivor.run(stop, 5))

    async def all_done() -> bool:
        return await redis.xlen(names.results) >= 6

    await eventually(all_done)
    stop.set()
    await run
    # s-0 may have reached the exchange: reconciled (maybe_sent), never dropped as a duplicate.
    assert sorted(survivor_calls.calls) == [("s-0", True)] + [
        (f"s-{i}", False) for i in range(1, 6)
    ]
    results = await read_stream(redis, names.results)
    assert sorted(r["id"] for r in results) == [f"s-{i}" for i in range(6)]
    assert {r["status"] for r in results} == {"accepted"}
    assert (await redis.xpending(names.stream, names.group))["pending"] == 0


async def test_an_entry_being_worked_on_is_not_claimed_by_another_replica(
    redis: Redis, names: Names
) -> None:
    slow = GatedSubmitter(open_gate=False)
    busy = make_pipeline(redis, names.stream, names.results, names.dead,
                         consumer="busy", submitter=slow)  # fmt: skip
    busy._claim_idle_ms = 1000
    other_calls = GatedSubmitter()
    other = make_pipeline(redis, names.stream, names.results, names.dead,
                          consumer="other", submitter=other_calls)  # fmt: skip
    other._claim_idle_ms = 1000
    await busy.intake.ensure_group()
    await publish(redis, names.stream, [signal("slow")])
    stop = asyncio.Event()
    run_busy = asyncio.create_task(busy.run(stop, 5))

    async def picked_up() -> bool:
        return len(slow.calls) == 1

    await eventually(picked_up)
    run_other = asyncio.create_task(other.run(stop, 5))
    # Three claim windows pass while the order is still in flight at "busy".
    await asyncio.sleep(3.0)
    assert other_calls.calls == []
    pending = await redis.xpending_range(names.stream, names.group, "-", "+", 10)
    assert [(p["consumer"], p["time_since_delivered"] < 1000) for p in pending] == [(b"busy", True)]
    slow.gate.set()

    async def done() -> bool:
        return await redis.xlen(names.results) >= 1

    await eventually(done)
    stop.set()
    await asyncio.gather(run_busy, run_other)
    assert [r["id"] for r in await read_stream(redis, names.results)] == ["s-slow"]


async def test_two_finishers_of_one_entry_write_exactly_one_result(
    redis: Redis, names: Names
) -> None:
    a = Intake(redis, names.stream, names.group, "a", names.results, names.dead)
    b = Intake(redis, names.stream, names.group, "b", names.results, names.dead)
    await a.ensure_group()
    await publish(redis, names.stream, [signal(1)])
    (entry,) = await a.read(10, 50)
    first, second = await asyncio.gather(
        a.finish(entry, {"id": "s-1", "status": "accepted", "by": "a"}),
        b.finish(entry, {"id": "s-1", "status": "accepted", "by": "b"}),
    )
    assert sorted([first, second]) == [False, True]
    assert len(await read_stream(redis, names.results)) == 1
    assert await a.dead_letter(entry, "late", "invalid", {"id": "s-1"}) is False
    assert await redis.xlen(names.dead) == 0
