"""How long each part of a run lasts and how many signals it sends: full and quick."""

from __future__ import annotations

from dataclasses import dataclass

PIPELINES = ("daemon", "floor")
CLIENTS = ("httpx", "httpx-aiohttp", "pybit", "ccxt", "ccxt-throttle")
SCENARIOS = (*PIPELINES, *CLIENTS, "backlog", "budget")


@dataclass(frozen=True)
class Rate:
    """``rate`` signals per second for ``seconds``, after ``lead_s`` of the same rate
    whose signals are sent but not measured (the step from the previous rate)."""

    rate: float
    seconds: float
    lead_s: float = 1.0

    @property
    def name(self) -> str:
        return f"{self.rate:g}/s"

    @property
    def tag(self) -> str:
        return f"r{self.rate:g}"

    @property
    def n(self) -> int:
        return round(self.rate * self.seconds)

    @property
    def lead(self) -> int:
        return round(self.rate * self.lead_s)


@dataclass(frozen=True)
class Plan:
    quick: bool
    rates: tuple[Rate, ...]  # the daemon and the floor
    warmup: int  # signals sent (at 100/s) and discarded before the first rate
    burst: int  # signals appended in one pipeline
    throughput: int  # backlog drained as fast as the contender goes
    client_rates: tuple[Rate, ...]  # the in-hand clients
    client_throughput: int
    client_throughput_s: float  # cap on a client's throughput phase
    backlog_marks: tuple[int, ...]  # signals waiting when resident memory is read
    budget_burst: int  # signals at the 10 orders/s budget
    slices: int = 1  # turns per rate, alternating between the pipelines
    concurrency: int = 16  # the daemon's default worker count; the same for everyone


FULL = Plan(
    quick=False,
    rates=(Rate(10, 30), Rate(100, 15), Rate(1000, 5)),
    warmup=200,
    burst=1000,
    throughput=10_000,
    client_rates=(Rate(10, 10), Rate(100, 10), Rate(1000, 3)),
    client_throughput=4000,
    client_throughput_s=8,
    backlog_marks=(10_000, 50_000, 100_000),
    budget_burst=500,
    slices=3,
)

QUICK = Plan(
    quick=True,
    rates=(Rate(10, 2, 0.5), Rate(100, 2, 0.5), Rate(1000, 1, 0.5)),
    warmup=50,
    burst=200,
    throughput=2000,
    client_rates=(Rate(10, 1, 0.3), Rate(100, 1, 0.3), Rate(1000, 0.5, 0.3)),
    client_throughput=500,
    client_throughput_s=2,
    backlog_marks=(2000, 10_000, 20_000),
    budget_burst=30,
)
