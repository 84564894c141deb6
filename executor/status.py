"""`executor status`: what the streams and the running replicas look like now.

Each running daemon writes a small presence record (breaker state, active
key, queue depth...) under a key that expires unless refreshed, so the
command sees every live replica and none that died. Everything else comes
straight from the streams: length, group lag, pending entries, dead letters
and the latest outcomes.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

PRESENCE_TTL_S = 10  # a replica silent this long is gone
SAMPLE = 100  # outcomes and dead letters counted by status/kind


def presence_prefix(stream: str) -> str:
    return f"executor:{stream}:replica:"


def presence_key(stream: str, consumer: str) -> str:
    return presence_prefix(stream) + consumer


async def write_presence(
    redis: Redis, stream: str, consumer: str, state: Mapping[str, Any]
) -> None:
    record = dict(state, consumer=consumer, seen_ms=int(time.time() * 1000))
    await redis.set(presence_key(stream, consumer), json.dumps(record), ex=PRESENCE_TTL_S)


async def clear_presence(redis: Redis, stream: str, consumer: str) -> None:
    await redis.delete(presence_key(stream, consumer))


@dataclass(frozen=True)
class Names:
    stream: str
    group: str
    results: str
    dead_letters: str
    halt_key: str


async def collect(redis: Redis, names: Names, last: int = 10) -> dict[str, Any]:
    """One snapshot, as plain data (the ``--json`` output)."""
    now_ms = int(time.time() * 1000)
    report: dict[str, Any] = {"now_ms": now_ms, "stream": await _stream(redis, names, now_ms)}
    halt = await redis.get(names.halt_key)
    report["halt"] = _text(halt) if halt is not None else None
    report["replicas"] = await _replicas(redis, names.stream)
    results = await _newest(redis, names.results, max(last, SAMPLE))
    report["results"] = {
        "stream": names.results,
        "length": await redis.xlen(names.results),
        "recent_by_status": dict(Counter(_text(f.get(b"status", b"")) for _id, f in results)),
        "last": [_outcome(entry_id, fields) for entry_id, fields in results[:last]],
    }
    dead = await _newest(redis, names.dead_letters, SAMPLE)
    report["dead_letters"] = {
        "stream": names.dead_letters,
        "length": await redis.xlen(names.dead_letters),
        "recent_by_kind": dict(Counter(_text(f.get(b"kind", b"")) for _id, f in dead)),
        "last_reason": _text(dead[0][1].get(b"reason", b"")) if dead else None,
    }
    return report


Fields = Mapping[bytes, bytes]


async def _newest(redis: Redis, stream: str, count: int) -> list[tuple[str, Fields]]:
    entries = await redis.xrevrange(stream, count=count) or []
    return [(_text(entry_id), fields or {}) for entry_id, fields in entries]  # type: ignore[misc]


async def _group(redis: Redis, stream: str, group: str) -> dict[str, Any] | None:
    """XINFO GROUPS' entry for one group, None when absent. Raises ResponseError
    while the stream does not exist."""
    for info in await redis.xinfo_groups(stream):
        if _text(info.get("name")) == group:
            return dict(info)
    return None


def _counts_of(group: dict[str, Any]) -> tuple[int, int | None]:
    lag = group.get("lag")
    return int(group.get("pending", 0)), int(lag) if lag is not None else None


async def group_counts(redis: Redis, stream: str, group: str) -> tuple[int, int | None]:
    """(pending, lag) of one group; lag None when Redis cannot tell. Raises
    ResponseError while the stream does not exist."""
    found = await _group(redis, stream, group)
    return _counts_of(found) if found is not None else (0, None)


async def _stream(redis: Redis, names: Names, now_ms: int) -> dict[str, Any]:
    info: dict[str, Any] = {"name": names.stream, "length": await redis.xlen(names.stream)}
    newest = await _newest(redis, names.stream, 1)
    info["last_entry_age_s"] = (now_ms - _entry_ms(newest[0][0])) / 1000 if newest else None
    info["group"] = None
    try:
        group = await _group(redis, names.stream, names.group)
    except ResponseError:  # no such stream yet
        return info
    if group is None:
        return info
    pending, lag = _counts_of(group)
    consumers = await redis.xinfo_consumers(names.stream, names.group)
    info["group"] = {
        "name": names.group,
        "pending": pending,
        "lag": lag,  # None: Redis cannot tell
        "last_delivered_id": _text(group.get("last-delivered-id")),
        "consumers": [
            {
                "name": _text(c.get("name")),
                "pending": int(c.get("pending", 0)),
                "idle_s": int(c.get("idle", 0)) / 1000,
            }
            for c in consumers
        ],
    }
    return info


async def _replicas(redis: Redis, stream: str) -> list[dict[str, Any]]:
    keys = [key async for key in redis.scan_iter(match=presence_prefix(stream) + "*", count=200)]
    records = await redis.mget(keys) if keys else []
    replicas = []
    for raw in records:
        if raw is None:
            continue  # expired between the scan and the read
        try:
            replicas.append(json.loads(raw))
        except ValueError:
            continue
    return sorted(replicas, key=lambda r: str(r.get("consumer", "")))


def _outcome(entry_id: str, fields: Fields) -> dict[str, Any]:
    out: dict[str, Any] = {"at_ms": _entry_ms(entry_id)}
    for name in ("id", "status", "ret_code", "ret_msg", "key", "attempts", "latency_ms"):
        out[name] = _text(fields.get(name.encode(), b""))
    return out


def _entry_ms(entry_id: bytes | str) -> int:
    return int(_text(entry_id).split("-", 1)[0])


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return "" if value is None else str(value)


def render(report: Mapping[str, Any]) -> str:
    """The report for a terminal."""
    lines = []
    now_ms = report["now_ms"]
    stream = report["stream"]
    age = stream["last_entry_age_s"]
    newest = f", newest {_ago(age)}" if age is not None else ""
    lines.append(f"stream {stream['name']}: {stream['length']} entries{newest}")
    group = stream["group"]
    if group is None:
        lines.append("  group: not created yet (the daemon creates it at start)")
    else:
        lag = "unknown" if group["lag"] is None else group["lag"]
        lines.append(
            f"  group {group['name']}: lag {lag} (not yet read), pending {group['pending']} "
            f"(read, not finished), {len(group['consumers'])} consumer(s)"
        )
        for consumer in group["consumers"]:
            lines.append(
                f"    {consumer['name']}: pending {consumer['pending']}, "
                f"idle {consumer['idle_s']:.1f}s"
            )
    halt = report["halt"]
    lines.append(f"kill switch: {'ON: ' + halt if halt is not None else 'off'}")
    replicas = report["replicas"]
    lines.append(f"replicas running: {len(replicas)}")
    for replica in replicas:
        lines.append("  " + _replica_line(replica, now_ms))
    dead = report["dead_letters"]
    kinds = _counts(dead["recent_by_kind"])
    lines.append(
        f"dead letters ({dead['stream']}): {dead['length']}"
        + (f"; latest {kinds}" if kinds else "")
    )
    if dead["last_reason"]:
        lines.append(f"  newest reason: {dead['last_reason']}")
    results = report["results"]
    statuses = _counts(results["recent_by_status"])
    lines.append(
        f"results ({results['stream']}): {results['length']}"
        + (f"; latest {statuses}" if statuses else "")
    )
    if results["last"]:
        lines.append("last outcomes (newest first):")
    for item in results["last"]:
        lines.append("  " + _outcome_line(item, now_ms))
    return "\n".join(lines)


def _outcome_line(item: Mapping[str, Any], now_ms: int) -> str:
    parts = [f"{_ago((now_ms - item['at_ms']) / 1000):>9}", item["id"] or "?", item["status"]]
    if item["ret_code"]:
        parts.append(f"retCode {item['ret_code']}")
    if item["key"]:
        parts.append(f"key {item['key']}")
    parts.append(f"attempts {item['attempts']}, {item['latency_ms']} ms")
    if item["ret_msg"] and item["status"] != "accepted":
        parts.append(f"({item['ret_msg']})")
    return "  ".join(parts)


def _replica_line(replica: Mapping[str, Any], now_ms: int) -> str:
    parts = [str(replica.get("consumer", "?"))]
    parts.append(f"breaker {replica.get('breaker', '?')}")
    key = replica.get("active_key")
    if key:
        parts.append(f"key {key} ({replica.get('fingerprint', '')})")
    failed = replica.get("failed_keys") or {}
    if failed:
        parts.append("refused keys: " + ", ".join(sorted(failed)))
    if replica.get("failovers"):
        parts.append(f"failovers {replica['failovers']}")
    parts.append(f"queue {replica.get('queue_depth', '?')}/{replica.get('queue_capacity', '?')}")
    parts.append(f"in hand {replica.get('in_hand', '?')}")
    if replica.get("ban_s"):
        parts.append(f"IP ban {replica['ban_s']:.0f}s left")
    if replica.get("dry_run"):
        parts.append("DRY RUN")
    seen = replica.get("seen_ms")
    if isinstance(seen, int):
        parts.append(f"seen {_ago((now_ms - seen) / 1000)}")
    return ", ".join(parts)


def _counts(counts: Mapping[str, int]) -> str:
    ordered = sorted(counts.items(), key=lambda item: -item[1])
    return ", ".join(f"{n} {name or '?'}" for name, n in ordered)


def _ago(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.1f}s ago"
    if seconds < 3600:
        return f"{seconds / 60:.0f}m ago"
    if seconds < 86_400:
        return f"{seconds / 3600:.1f}h ago"
    return f"{seconds / 86_400:.1f}d ago"
