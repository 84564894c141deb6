"""Redis stream intake: consumer group, reads, claims, results, dead letters, acks.

Own pending entries are read before new ones, so a restarted consumer
finishes what it had; entries left idle by a dead consumer are claimed.
A terminal outcome is written by one script that acks the entry and writes
its result (and the dedup record's final state) only if that ack took: an
entry is never acked without its result, and never gets two results, even
when two replicas race for it.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from executor.resp import Lean

SIGNAL_FIELD = b"signal"
SIG_FIELD = b"sig"
KID_FIELD = b"kid"

# KEYS: stream, results, dedup key ("" for none). ARGV: group, entry id, maxlen,
# dedup value, dedup ttl, then the result's field/value pairs.
FINISH = """
if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', unpack(ARGV, 6))
if ARGV[4] ~= '' then redis.call('SET', KEYS[3], ARGV[4], 'EX', ARGV[5]) end
return 1
"""

# KEYS: stream, results, dead letters. ARGV: group, entry id, maxlen, number of
# dead-letter field/value items, those items, then the result's items.
DEAD_LETTER = """
if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
local n = tonumber(ARGV[4])
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[3], '*', unpack(ARGV, 5, 4 + n))
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', unpack(ARGV, 5 + n))
return 1
"""


@dataclass(frozen=True, slots=True)
class Entry:
    """One stream entry as read: its id and raw fields (bytes, untouched)."""

    id: str
    fields: Mapping[bytes, bytes]
    redelivered: bool = False

    @property
    def stream_ms(self) -> int:
        """When Redis appended it (the millisecond part of the entry id)."""
        return int(self.id.split("-", 1)[0])


@dataclass(frozen=True, slots=True)
class DedupWrite:
    key: str
    value: str
    ttl_s: int


@dataclass
class Intake:
    redis: Redis
    stream: str
    group: str
    consumer: str
    results_stream: str
    dead_letter_stream: str
    results_maxlen: int = 1_000_000
    # The reads (they block: a connection of their own) and the acks with their
    # results, each on a lean connection when given; redis-py otherwise.
    reader: Redis | Lean | None = None
    hot: Redis | Lean | None = None
    _pending_cursor: str | None = field(default="0", init=False)

    def __post_init__(self) -> None:
        self._finish = (self.hot or self.redis).register_script(FINISH)
        self._dead_letter = self.redis.register_script(DEAD_LETTER)

    async def ensure_group(self) -> bool:
        """Create the group (and stream) if missing; True when it was created.

        A new group starts at the beginning of the stream, so signals published
        before the first daemon started are not skipped.
        """
        try:
            await self.redis.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
            return False
        return True

    def restart_pending(self) -> None:
        """Read this consumer's own pending entries again before new ones."""
        self._pending_cursor = "0"

    @property
    def reading_new(self) -> bool:
        """The next ``read`` asks for new entries (this consumer's pending ones are done)."""
        return self._pending_cursor is None

    async def read(self, count: int, block_ms: int) -> list[Entry]:
        """This consumer's pending entries first (paged by id), then new ones."""
        while self._pending_cursor is not None:
            entries = await self._read(self._pending_cursor, count, None)
            if not entries:
                self._pending_cursor = None
                break
            self._pending_cursor = entries[-1].id
            # An entry deleted from the stream (XDEL or trimming) comes back
            # without fields: nothing can be done with it, so release it.
            gone = [e.id for e in entries if not e.fields]
            if gone:
                await self.redis.xack(self.stream, self.group, *gone)
            live = [Entry(e.id, e.fields, redelivered=True) for e in entries if e.fields]
            if live:
                return live
        return await self._read(">", count, block_ms)

    async def _read(self, start: str, count: int, block_ms: int | None) -> list[Entry]:
        reply: Any = await (self.reader or self.redis).xreadgroup(
            self.group, self.consumer, {self.stream: start}, count=count, block=block_ms
        )
        entries: list[Entry] = []
        for _stream, items in reply or []:
            for entry_id, fields in items:
                key = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
                entries.append(Entry(key, fields or {}))
        return entries

    async def claim_stale(self, min_idle_ms: int, count: int) -> list[Entry]:
        """Take over entries another consumer (or this one) left idle too long."""
        reply: Any = await self.redis.xautoclaim(
            self.stream, self.group, self.consumer, min_idle_ms, "0-0", count=count
        )
        claimed = reply[1] if reply else []
        deleted = reply[2] if reply and len(reply) > 2 else []
        if deleted:
            await self.redis.xack(self.stream, self.group, *deleted)
        entries = []
        for entry_id, fields in claimed:
            if fields:
                key = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
                entries.append(Entry(key, fields, redelivered=True))
        return entries

    async def touch(self, entry_ids: Collection[str]) -> None:
        """Reset the idle time of entries being worked on, so nobody claims them."""
        if entry_ids:
            await self.redis.xclaim(
                self.stream, self.group, self.consumer, 0, list(entry_ids), justid=True
            )

    async def finish(
        self, entry: Entry, result: Mapping[str, Any], dedup: DedupWrite | None = None
    ) -> bool:
        """Ack the entry and write its result and dedup record, atomically.

        False when the entry was already acked (another replica finished it):
        then nothing is written.
        """
        keys = [self.stream, self.results_stream, dedup.key if dedup else ""]
        args: list[Any] = [
            self.group,
            entry.id,
            self.results_maxlen,
            dedup.value if dedup else "",
            dedup.ttl_s if dedup else 0,
            *_flatten(result),
        ]
        return bool(await self._finish(keys=keys, args=args))

    async def dead_letter(
        self, entry: Entry, reason: str, kind: str, result: Mapping[str, Any]
    ) -> bool:
        """Dead-letter an unusable entry with its reason, record it ``invalid``, ack it."""
        letter: dict[str, Any] = {
            "entry_id": entry.id,
            "stream": self.stream,
            "kind": kind,
            "reason": reason,
        }
        for name, value in entry.fields.items():
            letter[f"orig.{name.decode(errors='replace')}"] = value
        dead = _flatten(letter)
        keys = [self.stream, self.results_stream, self.dead_letter_stream]
        args = [self.group, entry.id, self.results_maxlen, len(dead), *dead, *_flatten(result)]
        return bool(await self._dead_letter(keys=keys, args=args))


def _flatten(fields: Mapping[str, Any]) -> list[Any]:
    items: list[Any] = []
    for name, value in _encode(fields).items():
        items.extend((name, value))
    return items


def _encode(result: Mapping[str, Any]) -> dict[Any, Any]:
    out: dict[Any, Any] = {}
    for name, value in result.items():
        if value is None:
            out[name] = ""
        elif isinstance(value, bytes | str):
            out[name] = value
        elif isinstance(value, dict | list):
            out[name] = json.dumps(value, separators=(",", ":"))
        else:
            out[name] = str(value)
    return out
