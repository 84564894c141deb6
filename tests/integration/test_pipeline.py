"""The pipeline on a real Redis: dedup across replicas, backpressure, shutdown."""

from __future__ import annotations

import asyncio
import contextlib

from redis.asyncio import Redis

from executor.pipeline import Job
from executor.publish import publish
from tests.conftest import Names
from tests.integration.helpers import (
    GatedSubmitter,
    eventually,
    make_pipeline,
    read_stream,
    signal,
)


class RecordingQueue(asyncio.Queue[Job]):
    """A bounded queue that remembers the deepest it has ever been."""

    deepest = 0

    def _put(self, item: Job) -> None:
        super()._put(item)  # type: ignore[misc]
        self.deepest = max(self.deepest, self.qsize())


async def test_repeated_signal_id_across_two_consumers_is_sent_once(
    redis: Redis, names: Names
) -> None:
    submitter = GatedSubmitter()
    a = make_pipeline(redis, names.stream, names.results, names.dead, consumer="a",
                      submitter=submitter, read_count=1)  # fmt: skip
    b = make_pipeline(redis, names.stream, names.results, names.dead, consumer="b",
                      submitter=submitter, read_count=1)  # fmt: skip
    await a.intake.ensure_group()
    # The same ids published twice: each copy lands on a different consumer.
    await publish(redis, names.stream, [signal(i) for i in range(20)] * 2)
    stop = asyncio.Event()
    runs = [asyncio.create_task(p.run(stop, 5)) for p in (a, b)]

    async def all_done() -> bool:
        return await redis.xlen(names.results) >= 40

    await eventually(all_done)
    stop.set()
    await asyncio.gather(*runs)

    results = await read_stream(redis, names.results)
    by_status: dict[str, list[str]] = {}
    for r in results:
        by_status.setdefault(r["status"], []).append(r["id"])
    assert sorted(by_status["accepted"]) == sorted(f"s-{i}" for i in range(20))
    assert sorted(by_status["duplicate"]) == sorted(f"s-{i}" for i in range(20))
    assert sorted(call[0] for call in submitter.calls) == sorted(f"s-{i}" for i in range(20))
    consumers = {
        c["name"]: c["pending"] for c in await redis.xinfo_consumers(names.stream, "executor")
    }
    assert set(consumers) == {b"a", b"b"} and sum(consumers.values()) == 0


async def test_full_queue_stops_intake_without_dropping_anything(
    redis: Redis, names: Names
) -> None:
    submitter = GatedSubmitter(open_gate=False)
    pipeline = make_pipeline(redis, names.stream, names.results, names.dead,
                             submitter=submitter, queue_size=5, workers=2)  # fmt: skip
    pipeline.queue = RecordingQueue(maxsize=5)
    await pipeline.intake.ensure_group()
    await publish(redis, names.stream, [signal(i) for i in range(100)])
    stop = asyncio.Event()
    run = asyncio.create_task(pipeline.run(stop, 5))

    async def queue_full() -> bool:
        return pipeline.queue.full() and len(submitter.calls) == 2

    await eventually(queue_full)
    # Let intake spin against the full queue for a while: it must not read on.
    for _ in range(20):
        await asyncio.sleep(0.01)
    info = (await redis.xinfo_groups(names.stream))[0]
    delivered = (await redis.xpending(names.stream, "executor"))["pending"]
    # Two in the workers' hands, five queued, one held by intake waiting for room.
    assert delivered <= 2 + 5 + 1
    assert info["lag"] >= 100 - delivered
    assert pipeline.queue.deepest == 5

    submitter.gate.set()

    async def all_done() -> bool:
        return await redis.xlen(names.results) >= 100

    await eventually(all_done)
    stop.set()
    await run
    results = await read_stream(redis, names.results)
    assert sorted(r["id"] for r in results) == sorted(f"s-{i}" for i in range(100))
    assert {r["status"] for r in results} == {"accepted"}
    assert pipeline.queue.deepest == 5
    assert (await redis.xpending(names.stream, "executor"))["pending"] == 0


async def test_stop_leaves_queued_signals_pending_for_the_next_run(
    redis: Redis, names: Names
) -> None:
    submitter = GatedSubmitter(open_gate=False)
    pipeline = make_pipeline(redis, names.stream, names.results, names.dead,
                             submitter=submitter, queue_size=10, workers=1)  # fmt: skip
    await pipeline.intake.ensure_group()
    await publish(redis, names.stream, [signal(i) for i in range(5)])
    stop = asyncio.Event()
    run = asyncio.create_task(pipeline.run(stop, drain_timeout_s=0.2))

    async def one_in_flight() -> bool:
        return len(submitter.calls) == 1 and pipeline.queue.qsize() == 4

    await eventually(one_in_flight)
    stop.set()
    with contextlib.suppress(asyncio.CancelledError):
        await run
    assert await redis.xlen(names.results) == 0
    assert (await redis.xpending(names.stream, "executor"))["pending"] == 5

    # The next run of the same consumer finishes all five, the first as maybe-sent.
    again = GatedSubmitter()
    restarted = make_pipeline(redis, names.stream, names.results, names.dead, submitter=again)
    stop2 = asyncio.Event()
    run2 = asyncio.create_task(restarted.run(stop2, 5))

    async def all_done() -> bool:
        return await redis.xlen(names.results) >= 5

    await eventually(all_done)
    stop2.set()
    await run2
    assert sorted(again.calls) == [("s-0", True)] + [(f"s-{i}", False) for i in range(1, 5)]
    assert (await redis.xpending(names.stream, "executor"))["pending"] == 0


async def batching_run(redis: Redis, names: Names, *, workers: int, count: int) -> GatedSubmitter:
    """``count`` signals appended before the pipeline starts (one read), sent by a
    submitter that batches up to 5, until every result is written."""
    submitter = GatedSubmitter(batch=5)
    pipeline = make_pipeline(redis, names.stream, names.results, names.dead,
                             submitter=submitter, workers=workers)  # fmt: skip
    await pipeline.intake.ensure_group()
    await publish(redis, names.stream, [signal(i) for i in range(count)])
    stop = asyncio.Event()
    run = asyncio.create_task(pipeline.run(stop, 5))

    async def written() -> bool:
        return await redis.xlen(names.results) >= count

    try:
        await eventually(written)
    finally:
        stop.set()
        await run
    return submitter


async def test_signals_with_an_idle_worker_each_go_alone_with_grants_asked_ahead(
    redis: Redis, names: Names
) -> None:
    submitter = await batching_run(redis, names, workers=4, count=3)  # one read of three
    assert submitter.batches == []
    assert sorted(call[0] for call in submitter.calls) == ["s-0", "s-1", "s-2"]
    # The three claims went to Redis together with one ask for their three grants.
    assert submitter.asked == [("linear", 3)]


async def test_signals_queued_beyond_the_idle_workers_go_in_batches(
    redis: Redis, names: Names
) -> None:
    submitter = await batching_run(redis, names, workers=2, count=10)
    assert submitter.calls == []
    assert sorted(map(len, submitter.batches)) == [5, 5]
    assert sorted(i for batch in submitter.batches for i in batch) == sorted(
        f"s-{i}" for i in range(10)
    )
    assert submitter.asked == []  # more than the idle workers: nothing asked ahead
    statuses = [r["status"] for r in await read_stream(redis, names.results)]
    assert statuses == ["accepted"] * 10


async def test_entries_are_read_while_the_previous_ones_are_being_claimed(
    redis: Redis, names: Names
) -> None:
    pipeline = make_pipeline(redis, names.stream, names.results, names.dead)
    await pipeline.intake.ensure_group()
    claims, gate = pipeline.dedup.claim_many, asyncio.Event()
    held: list[str] = []

    async def slow_claim(pairs, rider=None):  # type: ignore[no-untyped-def]
        held.extend(signal_id for signal_id, _ in pairs)
        await gate.wait()  # the claim's round trip, stretched
        return await claims(pairs, rider)

    object.__setattr__(pipeline.dedup, "claim_many", slow_claim)  # a frozen dataclass
    stop = asyncio.Event()
    run = asyncio.create_task(pipeline.run(stop, 5))
    await publish(redis, names.stream, [signal(1)])

    async def first_claim_waits() -> bool:
        return held == ["s-1"]

    await eventually(first_claim_waits)
    await publish(redis, names.stream, [signal(2)])

    async def second_read() -> bool:
        pending = await redis.xpending(names.stream, "executor")
        return int(pending["pending"]) == 2

    # The second entry is delivered to this consumer while the first one's claim
    # is still on its way: the next read did not wait for it.
    await eventually(second_read)
    assert held == ["s-1"]
    gate.set()

    async def both_done() -> bool:
        return await redis.xlen(names.results) == 2

    await eventually(both_done)
    stop.set()
    await run
    assert [r["status"] for r in await read_stream(redis, names.results)] == ["accepted"] * 2
