"""The daemon and the floor: signals appended to Redis, orders at the simulator.

Each contender gets a fresh stream and a reset simulator. It is warmed up,
then fed each rate in turn (open loop), a burst, and a backlog drained as fast
as it goes. Latency is XADD to the simulator's first look at the request.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
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


class Feeder:
    """Publishes to one contender's stream and waits for its orders at the simulator."""

    def __init__(self, redis: Redis, sim: SimAdmin, proc: Proc, stream: str, prefix: str) -> None:
        self.redis = redis
        self.sim = sim
        self.proc = proc
        self.stream = stream
        self.prefix = prefix
        self.expected = 0  # order requests the simulator should have seen so far

    async def settle(self, count: int) -> None:
        self.expected += count
        timeout = 30 + count / 100
        if not await self.sim.wait_created(self.expected, within_s=timeout):
            got = await self.sim.created()
            raise RuntimeError(
                f"{self.proc.name}: {got} of {self.expected} orders after {timeout:.0f}s\n"
                f"{self.proc.tail()}"
            )

    async def at_rate(self, tag: str, count: int, rate: float) -> publisher.Stamps:
        ids = publisher.signal_ids(f"{self.prefix}-{tag}", count)
        stamps = await publisher.at_rate(self.redis, self.stream, ids, rate)
        await self.settle(count)
        return stamps


async def run_pipeline(
    name: str,
    start: Starter,
    lab: Lab,
    redis: Redis,
    sim: SimAdmin,
    plan: Plan,
    nonce: str,
    env: Mapping[str, str] | None = None,
    profile_to: Path | None = None,
) -> Contender:
    streams = Streams.named(nonce, name)
    await sim.reset()
    proc = await start(streams)
    try:
        feed = Feeder(redis, sim, proc, streams.signals, f"{name[0]}{nonce}")
        await feed.at_rate("ready", 1, 1)  # up and reading
        await feed.at_rate("w", plan.warmup, 100)
        phases: list[Phase] = []
        stamps: dict[str, publisher.Stamps] = {}
        for rate in plan.rates:
            await feed.at_rate(f"{rate.tag}L", rate.lead, rate.rate)
            cpu0 = proc.cpu_s()
            stamps[rate.name] = await feed.at_rate(rate.tag, rate.n, rate.rate)
            cpu_us = (proc.cpu_s() - cpu0) / rate.n * 1e6
            phases.append(_phase(rate.name, rate.rate, stamps[rate.name], cpu_us))
        cpu0 = proc.cpu_s()
        ids = publisher.signal_ids(f"{feed.prefix}-b", plan.burst)
        stamps["burst"] = await publisher.burst(redis, streams.signals, ids)
        await feed.settle(plan.burst)
        cpu_us = (proc.cpu_s() - cpu0) / plan.burst * 1e6
        phases.append(_phase("burst", None, stamps["burst"], cpu_us))
        throughput = await _throughput(feed, lab, plan.throughput, profile_to)
        arrivals = await sim.arrivals()
        for phase in phases:
            fill(phase, stamps[phase.name], arrivals)
        peak = memory_kb(proc.pid, "VmHWM") / 1024
    finally:
        await lab.stop_async(proc, grace_s=30)
    return Contender(name, "pipeline", phases, throughput, peak, dict(env or {}))


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
    name: str, target: float | None, stamps: publisher.Stamps, cpu_us: float | None
) -> Phase:
    return Phase(
        name=name,
        target_rate=target,
        sent_rate=publisher.achieved_rate(stamps) if target else 0.0,
        sent=len(stamps),
        arrived=0,
        arrived_rate=0.0,
        latency=None,
        cpu_us=cpu_us,
    )


def fill(phase: Phase, stamps: publisher.Stamps, arrivals: Mapping[str, int]) -> None:
    samples = latencies(stamps, arrivals)
    phase.arrived = len(samples)
    mine = [arrivals[i] for i in stamps if i in arrivals]
    if len(mine) > 1:
        span_s = (max(mine) - min(stamps.values())) / 1e9
        phase.arrived_rate = (len(mine) - 1) / span_s if span_s > 0 else 0.0
    phase.samples_ns = samples
    phase.latency = summarize(samples)
