"""What a run measured, as plain dataclasses that serialise to JSON."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from bench.profile import Hotspot
from bench.stats import Latency


@dataclass
class Phase:
    name: str  # "10/s", "100/s", "1000/s", "burst", "throughput"
    target_rate: float | None
    sent_rate: float  # sends per second achieved
    sent: int
    arrived: int
    arrived_rate: float  # arrivals per second, from the first send to the last arrival
    latency: Latency | None
    cpu_us: float | None  # the contender's CPU time per signal, in microseconds
    errors: dict[str, int] = field(default_factory=dict)
    samples_ns: list[int] = field(default_factory=list, repr=False)


@dataclass
class Throughput:
    orders: int
    seconds: float  # first send to last arrival
    per_s: float  # steady rate: arrivals between the 10th and 90th percentile
    cpu_us: float  # the contender's CPU time per order, in microseconds
    cores: dict[str, float]  # CPU used by each process over the run, in cores


@dataclass
class Contender:
    name: str
    kind: str  # "pipeline" (XADD to the wire) or "in hand" (create call to the wire)
    phases: list[Phase]
    throughput: Throughput | None
    peak_rss_mb: float
    env: dict[str, str] = field(default_factory=dict)

    def phase(self, name: str) -> Phase | None:
        return next((p for p in self.phases if p.name == name), None)


@dataclass
class BacklogPoint:
    appended: int  # signals appended to the stream so far
    lag: int  # not yet read by the group
    pending: int  # read by the daemon, not yet acknowledged
    rss_mb: float
    redis_mb: float  # Redis's used_memory


@dataclass
class Backlog:
    queue_size: int
    workers: int
    points: list[BacklogPoint]
    peak_rss_mb: float


@dataclass
class BudgetRun:
    name: str
    how: str  # how the burst was handed to it
    signals: int
    placed: int  # orders the simulator accepted
    rate_limited: int  # 10006 answers
    other_errors: dict[str, int]
    seconds: float  # first send to the last accepted order
    finished: bool  # every signal placed before the time cap
    limit_per_s: int
    examples: dict[str, str] = field(default_factory=dict)  # one message per kind of failure

    @property
    def per_s(self) -> float:
        return self.placed / self.seconds if self.seconds > 0 else 0.0

    @property
    def budget_used(self) -> float:
        """Orders placed against the most a rolling one-second window lets through
        from the first send to the last order: ``limit × (seconds + 1)``."""
        return self.placed / (self.limit_per_s * (self.seconds + 1))


@dataclass
class Run:
    machine: dict[str, Any]
    command: str
    quick: bool
    wall_s: float
    limit_per_s: int  # the simulator's order budget in the rate-budget run
    contenders: list[Contender] = field(default_factory=list)
    backlog: Backlog | None = None
    budget: list[BudgetRun] = field(default_factory=list)
    # py-spy over the daemon's throughput run (--profile): busy samples, then hotspots.
    profile_samples: int = 0
    profile: list[Hotspot] = field(default_factory=list)

    def contender(self, name: str) -> Contender | None:
        return next((c for c in self.contenders if c.name == name), None)


def to_json(value: Any) -> Any:
    """Dataclasses as dicts, without the raw samples; properties of budget runs included."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out = {
            f.name: to_json(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if f.name != "samples_ns"
        }
        if isinstance(value, BudgetRun):
            out["per_s"] = value.per_s
            out["budget_used"] = value.budget_used
        return out
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    if isinstance(value, dict):
        return {k: to_json(v) for k, v in value.items()}
    return value
