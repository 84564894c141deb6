"""Run-time knobs of the simulator and the seeded draws that decide when faults fire."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

OrderLimit = int | Literal["unlimited"] | None
"""None: Bybit's defaults per category; an int: that many per second for every category."""

GATEWAY_PAGES = {
    502: "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>openresty</center>\r\n"
    "</body>\r\n</html>\r\n",
    503: "<html>\r\n<head><title>503 Service Temporarily Unavailable</title></head>\r\n"
    "<body>\r\n<center><h1>503 Service Temporarily Unavailable</h1></center>\r\n"
    "<hr><center>openresty</center>\r\n</body>\r\n</html>\r\n",
}
IP_BAN_TEXT = "access too frequent"


@dataclass(slots=True)
class FaultKnobs:
    error_rate: float = 0.0
    fail_next: int = 0  # the next N requests answer 503, whatever the error rate
    lose_rate: float = 0.0
    latency_ms: float = 0.0
    ip_ban: bool = False
    order_limit: OrderLimit = None
    # Requests per IP per window; None switches the IP limit off (benchmarks).
    ip_limit: int | None = 600
    revoked: set[str] = field(default_factory=set)
    clock_offset_ms: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "error_rate": self.error_rate,
            "fail_next": self.fail_next,
            "lose_rate": self.lose_rate,
            "latency_ms": self.latency_ms,
            "ip_ban": self.ip_ban,
            "order_limit": "default" if self.order_limit is None else self.order_limit,
            "ip_limit": "unlimited" if self.ip_limit is None else self.ip_limit,
            "revoked": sorted(self.revoked),
            "clock_offset_ms": self.clock_offset_ms,
        }

    def update(self, updates: Mapping[str, Any]) -> None:
        """Apply any knobs; every value is validated before any knob changes."""
        unknown = sorted(set(updates) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise ValueError(f"unknown fault knobs: {', '.join(unknown)}")
        staged = dataclasses.replace(self, revoked=set(self.revoked))
        for name, value in updates.items():
            setattr(staged, name, _PARSERS[name](name, value))
        for f in dataclasses.fields(self):
            setattr(self, f.name, getattr(staged, f.name))


def _rate(name: str, value: Any) -> float:
    rate = float(value)
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"{name} must be within [0, 1], got {value!r}")
    return rate


def _count(name: str, value: Any) -> int:
    if isinstance(value, bool) or int(value) < 0:
        raise ValueError(f"{name} must be a whole number >= 0, got {value!r}")
    return int(value)


def _latency(name: str, value: Any) -> float:
    latency = float(value)
    if not latency >= 0:
        raise ValueError(f"{name} must be >= 0, got {value!r}")
    return latency


def parse_order_limit(value: Any) -> OrderLimit:
    if value is None or value == "default":
        return None
    if value == "unlimited":
        return "unlimited"
    if isinstance(value, bool):
        raise ValueError(f"order_limit must be a number, 'unlimited' or 'default': {value!r}")
    limit = int(value)
    if limit < 0:
        raise ValueError(f"order_limit must be >= 0, got {value!r}")
    return limit


def parse_ip_limit(value: Any) -> int | None:
    if value is None or value == "unlimited":
        return None
    limit = int(value)
    if limit < 1:
        raise ValueError(f"ip_limit must be >= 1 or 'unlimited', got {value!r}")
    return limit


def _revoked(name: str, value: Any) -> set[str]:
    if isinstance(value, str):
        raise ValueError(f"{name} must be a list of API keys")
    return {str(k) for k in value}


_PARSERS: dict[str, Callable[[str, Any], Any]] = {
    "error_rate": _rate,
    "fail_next": _count,
    "lose_rate": _rate,
    "latency_ms": _latency,
    "ip_ban": lambda _name, value: bool(value),
    "order_limit": lambda _name, value: parse_order_limit(value),
    "ip_limit": lambda _name, value: parse_ip_limit(value),
    "revoked": _revoked,
    "clock_offset_ms": lambda _name, value: int(value),
}


class FaultDice:
    """Seeded draws; a knob at 0 draws nothing, so unrelated knobs do not shift a seed's run."""

    def __init__(self, seed: int | None) -> None:
        self._rng = random.Random(seed)

    def gateway_error(self, rate: float) -> int | None:
        if rate <= 0.0 or self._rng.random() >= rate:
            return None
        return 502 if self._rng.random() < 0.5 else 503

    def lose(self, rate: float) -> bool:
        return rate > 0.0 and self._rng.random() < rate
