"""Redis-backed idempotency records, one per signal id, shared by all replicas.

The record names the stream entry that owns the signal, so a redelivery of
the same entry after a crash is told apart from a second publication of the
same id: the first is finished (reconciled), the second is a duplicate.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from redis.asyncio import Redis

from executor.intake import DedupWrite

INFLIGHT = "inflight"
DONE = "done"


class Claim(StrEnum):
    NEW = "new"  # first sight of this id: go ahead
    RESUMED = "resumed"  # this same entry was in flight before: it may have been sent
    FINISHED = "finished"  # this same entry already has its result: just ack
    DUPLICATE = "duplicate"  # another entry owns this id


@dataclass(frozen=True)
class Dedup:
    redis: Redis
    prefix: str
    ttl_s: int = 86_400

    def key(self, signal_id: str) -> str:
        return f"{self.prefix}:dedup:{signal_id}"

    async def claim(self, signal_id: str, entry_id: str) -> Claim:
        key = self.key(signal_id)
        mine = f"{INFLIGHT}|{entry_id}"
        for _ in range(3):
            if await self.redis.set(key, mine, nx=True, ex=self.ttl_s):
                return Claim.NEW
            current = await self.redis.get(key)
            if current is None:
                continue  # expired between SET and GET: try again
            state, _, rest = _text(current).partition("|")
            owner = rest.split("|", 1)[0]
            if owner != entry_id:
                return Claim.DUPLICATE
            return Claim.FINISHED if state == DONE else Claim.RESUMED
        return Claim.DUPLICATE

    def done(self, signal_id: str, entry_id: str, status: str) -> DedupWrite:
        return DedupWrite(self.key(signal_id), f"{DONE}|{entry_id}|{status}", self.ttl_s)

    async def release(self, signal_id: str, entry_id: str) -> None:
        """Forget an in-flight claim that never reached the exchange."""
        key = self.key(signal_id)
        current = await self.redis.get(key)
        if current is not None and _text(current) == f"{INFLIGHT}|{entry_id}":
            await self.redis.delete(key)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
