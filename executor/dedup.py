"""Redis-backed idempotency records, one per signal id, shared by all replicas.

The record names the stream entry that owns the signal, so a redelivery of
the same entry after a crash is told apart from a second publication of the
same id: the first is finished (reconciled), the second is a duplicate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from redis.asyncio import Redis

from executor.intake import DedupWrite
from executor.resp import Lean
from executor.riding import Rider, riding

INFLIGHT = "inflight"
DONE = "done"

# KEYS: one dedup key per signal. ARGV: the ttl, then each key's in-flight value.
# Reply per key: 0 when this call claimed it, else the record that is there.
CLAIM = """
local out = {}
for i, key in ipairs(KEYS) do
  if redis.call('SET', key, ARGV[i + 1], 'NX', 'EX', ARGV[1]) then
    out[i] = 0
  else
    out[i] = redis.call('GET', key) or ''
  end
end
return out
"""


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
    hot: Redis | Lean | None = None  # the claims' connection, when not ``redis``
    _claim: Any = field(init=False, repr=False, compare=False)
    # The claim script with a rider's script after it, by the rider's script.
    _ridden: dict[str, Any] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_claim", self._scripts.register_script(CLAIM))

    @property
    def _scripts(self) -> Redis | Lean:
        return self.hot or self.redis

    def key(self, signal_id: str) -> str:
        return f"{self.prefix}:dedup:{signal_id}"

    async def claim(self, signal_id: str, entry_id: str) -> Claim:
        return (await self.claim_many([(signal_id, entry_id)]))[0]

    async def claim_many(
        self, pairs: Sequence[tuple[str, str]], rider: Rider | None = None
    ) -> list[Claim]:
        """Claim several (signal id, entry id) pairs in one round trip, in order;
        ``rider``: another script's call to make in the same round trip.

        A signal id that appears twice in ``pairs`` is claimed by its first entry;
        the later one is a duplicate, as if it had come in a later read.
        """
        if not pairs:
            return []
        keys = [self.key(signal_id) for signal_id, _ in pairs]
        args: list[Any] = [self.ttl_s, *(f"{INFLIGHT}|{entry_id}" for _, entry_id in pairs)]
        if rider is None:
            replies = await self._claim(keys=keys, args=args)
        else:
            script = self._ridden.get(rider.script)
            if script is None:
                script = self._ridden[rider.script] = self._scripts.register_script(
                    riding(CLAIM, rider.script)
                )
            replies, ridden = await script(
                keys=[*keys, *rider.keys], args=[len(keys), len(args), *args, *rider.args]
            )
            rider.done(ridden)
        return [
            _verdict(reply, entry_id) for reply, (_, entry_id) in zip(replies, pairs, strict=True)
        ]

    def done(self, signal_id: str, entry_id: str, status: str) -> DedupWrite:
        return DedupWrite(self.key(signal_id), f"{DONE}|{entry_id}|{status}", self.ttl_s)

    async def release(self, signal_id: str, entry_id: str) -> None:
        """Forget an in-flight claim that never reached the exchange."""
        key = self.key(signal_id)
        current = await self.redis.get(key)
        if current is not None and _text(current) == f"{INFLIGHT}|{entry_id}":
            await self.redis.delete(key)


def _verdict(reply: int | bytes | str, entry_id: str) -> Claim:
    if reply == 0:
        return Claim.NEW
    state, _, rest = _text(reply).partition("|")  # type: ignore[arg-type]
    owner = rest.split("|", 1)[0]
    if owner != entry_id:
        return Claim.DUPLICATE
    return Claim.FINISHED if state == DONE else Claim.RESUMED


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
