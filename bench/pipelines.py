"""The daemon and the floor: signals appended to Redis, orders at the simulator.

Each contender gets a fresh stream. All are started and warmed up together,
then fed each rate (open loop) in turns that alternate between them, then a
burst and a backlog drained as fast as it goes, one after the other. Latency
is XADD to the simulator's first look at the request.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from redis.asyncio import Redis

from bench import publisher
from bench.harness import Lab, Proc, SimAdmin, cpu_seconds, memory_kb
from bench.plan import Plan
from bench.profile import Recorder
from bench.results import Contender, Phase, Throughput
from bench.stats import latencies, steady_rate, summarize
from executor.bybit.sim_state import PRIMARY


@dataclass
class Streams:
    signals: str
    results: str
    dead: str

    @classmethod
    def named(cls, nonce: str, name: str) -> Streams:
        base = f"bench:{nonce}:{name}"
        return cls(base, f"{base}:results", f"{base}:dead")


Starter = Callable[[Streams], Awaitable[Proc]]


def daemon_env(
    redis_url: str, sim_url: str, streams: Streams, consumer: str, **settings: str
) -> dict[str, str]:
    """The daemon's settings for a run: this Redis, this simulator, these streams,
    quiet logs, no metrics port; a rate limit no run reaches unless ``settings``
    bring one."""
    return {
        "EXECUTOR_REDIS_URL": redis_url,
        "EXECUTOR_BYBIT_BASE_URL": sim_url,
        "EXECUTOR_PRIMARY_API_KEY": PRIMARY.api_key,
        "EXECUTOR_PRIMARY_API_SECRET": PRIMARY.secret,
        "EXECUTOR_STREAM": streams.signals,
        "EXECUTOR_RESULTS_STREAM": streams.results,
        "EXECUTOR_DEAD_LETTER_STREAM": streams.dead,
        "EXECUTOR_CONSUMER": consumer,
        "EXECUTOR_RATE_LIMIT_PER_S": "100000",
        "EXECUTOR_RATE_LIMIT_BURST": "100000",
        "EXECUTOR_BATCH_ORDERS": "true",
        "EXECUTOR_LOG_LEVEL": "warning",
        "EXECUTOR_LOG_FORMAT": "json",
        "EXECUTOR_METRICS_PORT": "0",
        **settings,
    }


@dataclass
class Tally:
    """Order requests the simulator should have seen so far, from every feeder."""

    expected: int = 0


class Feeder:
    """Publishes to one contender's stream and waits for its orders at the simulator."""

    def __init__(
        self,
        redis: Redis,
        sim: SimAdmin,
        proc: Proc,
        stream: str,
        prefix: str,
        tally: Tally | None = None,  # shared by feeders on one simulator
    ) -> None:
        self.redis = redis
        self.sim = sim
        self.proc = proc
        self.stream = stream
        self.prefix = prefix
        self.tally = tally or Tally()

    async def settle(self, count: int) -> None:
        self.tally.expected += count
        expected = self.tally.expected
        timeout = 30 + count / 100
        if not await self.sim.wait_created(expected, within_s=timeout):
            got = await self.sim.created()
            raise RuntimeError(
                f"{self.proc.name}: {got} of {expected} orders after {timeout:.0f}s\n"
                f"{self.proc.tail()}"
            )

    async def at_rate(self, tag: str, count: int, rate: float) -> publisher.Stamps:
        ids = publisher.signal_ids(f"{self.prefix}-{tag}", count)
        stamps = await publisher.at_rate(self.redis, self.stream, ids, rate)
        await self.settle(count)
        return stamps


@dataclass
class Entrant:
    """A pipeline to run: its name, how to start it, the settings it was given."""

    name: str
    start: Starter
    env: Mapping[str, str]
    profile_to: Path | None = None


async def run_pipelines(
    entrants: Sequence[Entrant], lab: Lab, redis: Redis, sim: SimAdmin, plan: Plan, nonce: str
) -> list[Contender]:
    """The pipelines side by side: all started and warmed up, then each rate in
    ``plan.slices`` turns that alternate between them (each after a lead-in at
    that rate), so that a drift of the shared machine during the run weighs on
    every one alike. Then the burst and the throughput, one after the other."""
    await sim.reset()
    tally = Tally()
    feeds: list[Feeder] = []
    try:
        for entrant in entrants:
            streams = Streams.named(nonce, entrant.name)
            proc = await entrant.start(streams)
            feeds.append(Feeder(redis, sim, proc, streams.signals, f"{entrant.name[0]}{nonce}",
                                tally))  # fmt: skip
        for feed in feeds:
            await feed.at_rate("ready", 1, 1)  # up and reading
            await feed.at_rate("w", plan.warmup, 100)
        slices: dict[tuple[int, str], list[publisher.Stamps]] = defaultdict(list)
        cpu_s: dict[tuple[int, str], float] = defaultdict(float)
        for rate in plan.rates:
            each = max(1, round(rate.n / plan.slices))
            for turn in range(plan.slices):
                order = list(enumerate(feeds))
                for index, feed in order if turn % 2 == 0 else reversed(order):
                    await feed.at_rate(f"{rate.tag}L{turn}", rate.lead, rate.rate)
                    cpu0 = feed.proc.cpu_s()
                    stamps = await feed.at_rate(f"{rate.tag}s{turn}", each, rate.rate)
                    cpu_s[index, rate.name] += feed.proc.cpu_s() - cpu0
                    slices[index, rate.name].append(stamps)
        contenders = []
        for index, (entrant, feed) in enumerate(zip(entrants, feeds, strict=True)):
            phases = [
                _phase(rate.name, rate.rate, slices[index, rate.name],
                       cpu_s[index, rate.name] * 1e6 / sum(map(len, slices[index, rate.name])))
                for rate in plan.rates
            ]  # fmt: skip
            cpu0 = feed.proc.cpu_s()
            ids = publisher.signal_ids(f"{feed.prefix}-b", plan.burst)
            burst = await publisher.burst(redis, feed.stream, ids)
            await feed.settle(plan.burst)
            cpu_us = (feed.proc.cpu_s() - cpu0) / plan.burst * 1e6
            phases.append(_phase("burst", None, [burst], cpu_us))
            slices[index, "burst"] = [burst]
            throughput = await _throughput(feed, lab, plan.throughput, entrant.profile_to)
            arrivals = await sim.arrivals()
            for phase in phases:
                fill(phase, slices[index, phase.name], arrivals)
            peak = memory_kb(feed.proc.pid, "VmHWM") / 1024
            contenders.append(Contender(entrant.name, "pipeline", phases, throughput, peak,
                                        dict(entrant.env)))  # fmt: skip
    finally:
        for feed in feeds:
            await lab.stop_async(feed.proc, grace_s=30)
    return contenders


async def _throughput(
    feed: Feeder, lab: Lab, count: int, profile_to: Path | None = None
) -> Throughput:
    """Append ``count`` signals at once and time their orders' arrival; with
    ``profile_to``, py-spy samples the contender meanwhile."""
    pids = {feed.proc.name: feed.proc.pid, "simulator": _sim_pid(lab), "redis": lab.redis_pid}
    cpu0 = {name: cpu_seconds(pid) for name, pid in pids.items()}
    wall0 = time.monotonic()
    ids = publisher.signal_ids(f"{feed.prefix}-t", count)
    recorder = Recorder(feed.proc.pid, profile_to) if profile_to is not None else None
    sent = time.monotonic_ns()
    try:
        await publisher.bulk(feed.redis, feed.stream, ids)
        await feed.settle(count)
    finally:
        if recorder is not None:
            recorder.stop()
    wall = time.monotonic() - wall0
    cores = {name: (cpu_seconds(pid) - cpu0[name]) / wall for name, pid in pids.items()}
    arrivals = await feed.sim.arrivals()
    mine = [arrivals[i] for i in ids if i in arrivals]
    return Throughput(
        orders=len(mine),
        seconds=(max(mine) - sent) / 1e9,
        per_s=steady_rate(mine),
        cpu_us=cores[feed.proc.name] * wall / count * 1e6,
        cores=cores,
    )


def _sim_pid(lab: Lab) -> int:
    return lab.find("simulator").pid


def _phase(
    name: str, target: float | None, slices: Sequence[publisher.Stamps], cpu_us: float | None
) -> Phase:
    return Phase(
        name=name,
        target_rate=target,
        sent_rate=_per_s([len(st) for st in slices], [_span_ns(st.values()) for st in slices])
        if target
        else 0.0,
        sent=sum(map(len, slices)),
        arrived=0,
        arrived_rate=0.0,
        latency=None,
        cpu_us=cpu_us,
    )


def fill(phase: Phase, slices: Sequence[publisher.Stamps], arrivals: Mapping[str, int]) -> None:
    """Latency samples and the arrival rate (over each slice, from its first send
    to its last arrival, summed) of a phase's orders."""
    stamps = {i: t for st in slices for i, t in st.items()}
    samples = latencies(stamps, arrivals)
    phase.arrived = len(samples)
    counts, spans = [], []
    for st in slices:
        mine = [arrivals[i] for i in st if i in arrivals]
        if mine:
            counts.append(len(mine))
            spans.append(max(mine) - min(st.values()))
    phase.arrived_rate = _per_s(counts, spans)
    phase.samples_ns = samples
    phase.latency = summarize(samples)


def _span_ns(times: Iterable[int]) -> int:
    ordered = sorted(times)
    return ordered[-1] - ordered[0] if ordered else 0


def _per_s(counts: Sequence[int], spans_ns: Sequence[int]) -> float:
    """Events per second over slices: the intervals between them over their spans."""
    span_s = sum(spans_ns) / 1e9
    return sum(max(0, n - 1) for n in counts) / span_s if span_s > 0 else 0.0
