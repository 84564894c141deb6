"""Redis stream intake: consumer group, reads, results, dead letters, acks.

Own pending entries are read before new ones, so a restarted consumer
finishes what it had. A terminal outcome is written with its XACK (and the
dedup record's final state) in one MULTI/EXEC, so an entry is never acked
without its result, nor given a result twice.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

SIGNAL_FIELD = b"signal"
SIG_FIELD = b"sig"


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
    _pending_cursor: str | None = field(default="0", init=False)

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
        reply: Any = await self.redis.xreadgroup(
            self.group, self.consumer, {self.stream: start}, count=count, block=block_ms
        )
        entries: list[Entry] = []
        for _stream, items in reply or []:
            for entry_id, fields in items:
                key = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
                entries.append(Entry(key, fields or {}))
        return entries

    async def finish(
        self, entry: Entry, result: Mapping[str, Any], dedup: DedupWrite | None = None
    ) -> None:
        """Write the terminal result, the dedup record and the ack atomically."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.xadd(
                self.results_stream,
                _encode(result),
                maxlen=self.results_maxlen,
                approximate=True,
            )
            if dedup is not None:
                pipe.set(dedup.key, dedup.value, ex=dedup.ttl_s)
            pipe.xack(self.stream, self.group, entry.id)
            await pipe.execute()

    async def dead_letter(
        self, entry: Entry, reason: str, kind: str, result: Mapping[str, Any]
    ) -> None:
        """Dead-letter an unusable entry with its reason, record it ``invalid``, ack it."""
        letter: dict[Any, Any] = {
            "entry_id": entry.id,
            "stream": self.stream,
            "kind": kind,
            "reason": reason,
        }
        for name, value in entry.fields.items():
            letter[f"orig.{name.decode(errors='replace')}"] = value
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.xadd(self.dead_letter_stream, letter, maxlen=self.results_maxlen, approximate=True)
            pipe.xadd(
                self.results_stream, _encode(result), maxlen=self.results_maxlen, approximate=True
            )
            pipe.xack(self.stream, self.group, entry.id)
            await pipe.execute()


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
