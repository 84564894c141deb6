"""The consumer group on a real Redis: creation, pending-first, atomic finish, dead letters."""

from __future__ import annotations

import json

from redis.asyncio import Redis

from executor.dedup import Dedup
from executor.intake import DedupWrite, Intake
from executor.publish import publish
from tests.conftest import Names
from tests.integration.helpers import GatedSubmitter, make_pipeline, read_stream, signal, text


def intake_for(redis: Redis, names: Names, consumer: str = "c1") -> Intake:
    return Intake(redis, names.stream, names.group, consumer, names.results, names.dead)


async def test_group_is_created_with_the_stream_when_missing(redis: Redis, names: Names) -> None:
    intake = intake_for(redis, names)
    assert await intake.ensure_group() is True
    assert await intake.ensure_group() is False
    groups = await redis.xinfo_groups(names.stream)
    assert [text(g["name"]) for g in groups] == [names.group]


async def test_new_group_reads_signals_published_before_it_existed(
    redis: Redis, names: Names
) -> None:
    ids = await publish(redis, names.stream, [signal(1), signal(2)])
    intake = intake_for(redis, names)
    await intake.ensure_group()
    entries = await intake.read(10, 50)
    assert [e.id for e in entries] == ids


async def test_restarted_consumer_reads_its_own_pending_entries_first(
    redis: Redis, names: Names
) -> None:
    first = intake_for(redis, names)
    await first.ensure_group()
    old = await publish(redis, names.stream, [signal(i) for i in range(3)])
    assert [e.id for e in await first.read(10, 50)] == old  # read, never acked: a crash
    new = await publish(redis, names.stream, [signal(i) for i in range(3, 5)])

    restarted = intake_for(redis, names)
    pending = await restarted.read(2, 50)
    assert [e.id for e in pending] == old[:2]
    assert all(e.redelivered for e in pending)
    pending_rest = await restarted.read(2, 50)
    assert [e.id for e in pending_rest] == old[2:]
    fresh = await restarted.read(10, 50)
    assert [e.id for e in fresh] == new
    assert not any(e.redelivered for e in fresh)


async def test_another_consumers_pending_entries_are_not_read(redis: Redis, names: Names) -> None:
    a, b = intake_for(redis, names, "a"), intake_for(redis, names, "b")
    await a.ensure_group()
    await publish(redis, names.stream, [signal(1)])
    assert len(await a.read(10, 50)) == 1
    assert await b.read(10, 50) == []


async def test_finish_writes_result_dedup_record_and_ack_together(
    redis: Redis, names: Names
) -> None:
    intake = intake_for(redis, names)
    await intake.ensure_group()
    await publish(redis, names.stream, [signal(1)])
    (entry,) = await intake.read(10, 50)
    await intake.finish(
        entry, {"id": "s-1", "status": "accepted", "attempts": 1}, DedupWrite("k:s-1", "done", 60)
    )
    assert (await redis.xpending(names.stream, names.group))["pending"] == 0
    assert await read_stream(redis, names.results) == [
        {"id": "s-1", "status": "accepted", "attempts": "1"}
    ]
    assert await redis.get("k:s-1") == b"done"
    assert 0 < await redis.ttl("k:s-1") <= 60


BAD_ENTRIES: list[tuple[str, bytes, str]] = [
    ("not-json", b"{not json", "not valid JSON"),
    ("missing-fields", json.dumps({"id": "m1", "symbol": "BTCUSDT"}).encode(), "side: required"),
    ("qty-zero", json.dumps(signal("z", qty="0")).encode(), "qty: must be greater than 0"),
    ("qty-negative", json.dumps(signal("n", qty=-1)).encode(), "qty: must be greater than 0"),
    ("qty-text", json.dumps(signal("t", qty="ten")).encode(), "qty: must be a decimal number"),
    ("one-megabyte", json.dumps(signal("big", pad="x" * 1_048_576)).encode(), "too large"),
]


async def test_bad_entries_are_dead_lettered_with_reason_and_payload_and_never_submitted(
    redis: Redis, names: Names
) -> None:
    submitter = GatedSubmitter()
    pipeline = make_pipeline(redis, names.stream, names.results, names.dead, submitter=submitter)
    await pipeline.intake.ensure_group()
    await publish(redis, names.stream, [raw for _name, raw, _why in BAD_ENTRIES])
    await redis.xadd(names.stream, {"not-signal": "x"})
    for entry in await pipeline.intake.read(100, 50):
        await pipeline.admit(entry)

    dead = await redis.xrange(names.dead)
    assert len(dead) == len(BAD_ENTRIES) + 1
    for (_name, raw, why), (_id, letter) in zip(BAD_ENTRIES, dead, strict=False):
        assert why in text(letter[b"reason"])
        assert letter[b"orig.signal"] == raw  # the original payload, byte for byte
        assert letter[b"kind"] == b"invalid"
    assert text(dead[-1][1][b"reason"]) == "missing field 'signal'"
    results = await read_stream(redis, names.results)
    assert [r["status"] for r in results] == ["invalid"] * (len(BAD_ENTRIES) + 1)
    assert results[2]["id"] == "s-z"  # the id is kept when it can be read
    assert (await redis.xpending(names.stream, names.group))["pending"] == 0
    assert submitter.calls == []
    assert pipeline.queue.qsize() == 0


async def test_unsigned_and_badly_signed_signals_are_refused_when_a_secret_is_set(
    redis: Redis, names: Names
) -> None:
    pipeline = make_pipeline(
        redis, names.stream, names.results, names.dead, signal_secrets={"": "publisher-secret"}
    )
    await pipeline.intake.ensure_group()
    await publish(redis, names.stream, [signal(1)])  # unsigned
    await publish(redis, names.stream, [signal(2)], secret="wrong-secret")
    await publish(redis, names.stream, [signal(3)], secret="publisher-secret")
    for entry in await pipeline.intake.read(100, 50):
        await pipeline.admit(entry)
    dead = await read_stream(redis, names.dead)
    assert [(d["kind"], d["reason"]) for d in dead] == [
        ("unauthenticated", "unsigned signal"),
        ("unauthenticated", "bad signature"),
    ]
    assert pipeline.queue.qsize() == 1
    assert pipeline.queue.get_nowait().signal.id == "s-3"


async def test_dedup_record_tells_redelivery_from_republication(redis: Redis, names: Names) -> None:
    dedup = Dedup(redis, prefix=names.prefix, ttl_s=3600)
    assert (await dedup.claim("a", "1-0")).value == "new"
    assert (await dedup.claim("a", "1-0")).value == "resumed"
    assert (await dedup.claim("a", "2-0")).value == "duplicate"
    done = dedup.done("a", "1-0", "accepted")
    await redis.set(done.key, done.value, ex=done.ttl_s)
    assert (await dedup.claim("a", "1-0")).value == "finished"
    assert (await dedup.claim("a", "3-0")).value == "duplicate"
    assert 3500 < await redis.ttl(dedup.key("a")) <= 3600


async def test_two_publisher_keys_are_valid_during_a_rotation_and_replays_are_refused(
    redis: Redis, names: Names
) -> None:
    secrets = {"old": "publisher-secret-1", "new": "publisher-secret-2"}
    pipeline = make_pipeline(redis, names.stream, names.results, names.dead, signal_secrets=secrets)
    await pipeline.intake.ensure_group()
    await publish(redis, names.stream, [signal("a")], secret="publisher-secret-1", kid="old")
    await publish(redis, names.stream, [signal("b")], secret="publisher-secret-2", kid="new")
    await publish(redis, names.stream, [signal("c")], secret="publisher-secret-2")  # no kid
    await publish(redis, names.stream, [signal("d")], secret="publisher-secret-1", kid="new")
    await publish(redis, names.stream, [signal("e")], secret="publisher-secret-1", kid="gone")
    stale = signal("f", ts=1_700_000_000_000, ttl_ms=1000)  # correctly signed, long expired
    await publish(redis, names.stream, [stale], secret="publisher-secret-1", kid="old")
    for entry in await pipeline.intake.read(100, 50):
        await pipeline.admit(entry)
    queued = [pipeline.queue.get_nowait().signal.id for _ in range(pipeline.queue.qsize())]
    assert queued == ["s-a", "s-b", "s-c"]
    dead = await read_stream(redis, names.dead)
    assert [(d["kind"], d["reason"]) for d in dead] == [
        ("unauthenticated", "bad signature"),
        ("unauthenticated", "unknown signing key id"),
        ("replay", "signal past its ts + ttl_ms: refused"),
    ]


async def test_claims_of_one_read_go_in_one_call_and_keep_their_order(
    redis: Redis, names: Names
) -> None:
    dedup = Dedup(redis, prefix=names.prefix, ttl_s=3600)
    assert (await dedup.claim("b", "1-0")).value == "new"
    claims = await dedup.claim_many([("a", "2-0"), ("b", "1-0"), ("a", "3-0"), ("c", "4-0")])
    # "a" twice in one read: its first entry owns it, the second is a duplicate.
    assert [c.value for c in claims] == ["new", "resumed", "duplicate", "new"]
    assert await redis.get(dedup.key("a")) == b"inflight|2-0"
    assert await dedup.claim_many([]) == []
