"""Publishing signals: what a publisher does, used by `executor publish` and the demo."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from redis.asyncio import Redis

from executor.signals import sign_signal


def encode_signal(signal: Mapping[str, Any]) -> bytes:
    """Compact JSON bytes, the form that is signed and stored."""
    return json.dumps(signal, separators=(",", ":"), default=str).encode()


def stamp(signal: Mapping[str, Any]) -> dict[str, Any]:
    """Fill in an id and a timestamp when the publisher left them out."""
    out = dict(signal)
    out.setdefault("id", f"sig-{uuid.uuid4().hex[:24]}")
    out.setdefault("ts", int(time.time() * 1000))
    return out


def entry_fields(raw: bytes, secret: str | None, kid: str | None = None) -> dict[bytes, bytes]:
    fields = {b"signal": raw}
    if secret:
        fields[b"sig"] = sign_signal(secret, raw).encode()
        if kid:
            fields[b"kid"] = kid.encode()
    return fields


async def publish(
    redis: Redis,
    stream: str,
    signals: Iterable[Mapping[str, Any] | bytes],
    *,
    secret: str | None = None,
    kid: str | None = None,
) -> list[str]:
    """XADD each signal (a mapping, or raw bytes sent as they are); return entry ids."""
    async with redis.pipeline(transaction=False) as pipe:
        for signal in signals:
            raw = signal if isinstance(signal, bytes) else encode_signal(stamp(signal))
            pipe.xadd(stream, entry_fields(raw, secret, kid))  # type: ignore[arg-type]
        ids = await pipe.execute()
    return [i.decode() if isinstance(i, bytes) else str(i) for i in ids]
