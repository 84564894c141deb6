"""python -m bench [--quick] [--only daemon,floor] [--daemon-env KEY=VALUE ...] [--out DIR]

Starts a private Redis, the simulator and every contender on this machine
(127.0.0.1 only), measures them one after another, and writes
benchmarks.md, benchmarks.json and latency_cdf.png to --out (docs/).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import re
import secrets
import shlex
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from redis.asyncio import Redis

from bench import machine, report
from bench.backlog import run_backlog
from bench.budget import LIMIT, run_budget
from bench.harness import ROOT, Lab, Proc, SimAdmin, lab, wait_for_line
from bench.inhand import run_in_hand
from bench.pipelines import Entrant, Starter, Streams, daemon_env, run_pipelines
from bench.plan import CLIENTS, FULL, PIPELINES, QUICK, SCENARIOS, Plan
from bench.profile import hotspots
from bench.results import Contender, Run

FLOOR_READY = re.compile("floor ready")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Latency, throughput, CPU, memory and rate-budget benchmarks of the "
        "daemon against a bare loop, httpx, pybit and ccxt, on this machine.",
    )
    parser.add_argument("--quick", action="store_true", help="short runs (about a minute)")
    parser.add_argument(
        "--only",
        type=_scenarios,
        default=SCENARIOS,
        metavar="NAMES",
        help=f"comma-separated subset of: {','.join(SCENARIOS)}",
    )
    parser.add_argument(
        "--daemon-env",
        dest="daemon_env",
        type=_assignment,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra setting for every daemon started (repeatable), e.g. EXECUTOR_WORKERS=32",
    )
    parser.add_argument(
        "--out", type=Path, default=ROOT / "docs", help="where the report goes (default docs/)"
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="sample the daemon with py-spy while it drains the throughput backlog "
        "(slows it: its throughput figure is then not comparable)",
    )
    parser.add_argument(
        "--logs", type=Path, default=None, help="keep the processes' logs in this directory"
    )
    return parser.parse_args(argv)


def _scenarios(text: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown scenario {', '.join(unknown) or '(none)'}; choose from {','.join(SCENARIOS)}"
        )
    return names


def _assignment(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def say(text: str) -> None:
    print(text, flush=True)


async def measure(args: argparse.Namespace, workdir: Path, command: str) -> Run:
    plan: Plan = QUICK if args.quick else FULL
    started = time.monotonic()
    with lab(workdir) as running:
        redis_url = running.redis()
        redis = Redis.from_url(redis_url)
        try:
            version = str((await redis.info("server"))["redis_version"])
            run = Run(machine.describe(version, ROOT), command, plan.quick, 0.0, LIMIT)
            bench = Bench(args, plan, running, redis, redis_url, run)
            run.machine["floor_loop"] = floor_loop(bench.extra)
            run.machine["slices"] = plan.slices
            wanted = set(args.only)
            if wanted & {*PIPELINES, *CLIENTS}:
                await bench.contenders(wanted)
            if "backlog" in wanted:
                await bench.backlog()
            if "budget" in wanted:
                await bench.budget()
        finally:
            await redis.aclose()
    run.wall_s = time.monotonic() - started
    return run


class Bench:
    """One run's parts, in the order they are measured."""

    def __init__(
        self, args: argparse.Namespace, plan: Plan, running: Lab, redis: Redis, url: str, run: Run
    ) -> None:
        self.args = args
        self.plan = plan
        self.lab = running
        self.redis = redis
        self.redis_url = url
        self.run = run
        self.extra = dict(args.daemon_env)
        self.nonce = secrets.token_hex(2)

    async def contenders(self, wanted: set[str]) -> None:
        """The daemon, the floor and the clients, one after another, on one simulator."""
        _proc, sim_url = await self.lab.simulator(
            "simulator", "--order-limit", "unlimited", "--ip-limit", "unlimited"
        )
        sim = SimAdmin(sim_url)
        try:
            pipelines = [n for n in PIPELINES if n in wanted]
            if pipelines:
                say(f"{' and '.join(pipelines)}: rates in alternating turns, burst, throughput")
                await self._pipelines(pipelines, sim)
            for name in (n for n in CLIENTS if n in wanted):
                say(f"{name}: orders in hand")
                contender = await run_in_hand(name, self.lab, sim, self.plan, self.nonce)
                _show(contender)
                self.run.contenders.append(contender)
        finally:
            await sim.aclose()

    async def _pipelines(self, names: list[str], sim: SimAdmin) -> None:
        entrants = []
        for name in names:
            start = _starter(name, self.lab, self.redis_url, sim.url, self.plan, self.extra)
            daemon = name == "daemon"
            profile_to = (
                self.lab.workdir / "daemon.pyspy.txt" if daemon and self.args.profile else None
            )
            entrants.append(Entrant(name, start, self.extra if daemon else {}, profile_to))
        contenders = await run_pipelines(entrants, self.lab, self.redis, sim, self.plan, self.nonce)
        for entrant, contender in zip(entrants, contenders, strict=True):
            if entrant.profile_to is not None and entrant.profile_to.exists():
                lines = entrant.profile_to.read_text().splitlines()
                self.run.profile_samples, self.run.profile = hotspots(lines)
            say(f"{contender.name}:")
            _show(contender)
            self.run.contenders.append(contender)

    async def backlog(self) -> None:
        marks = ", ".join(f"{m:,}" for m in self.plan.backlog_marks)
        say(f"backlog: daemon memory with {marks} signals appended")
        backlog = await run_backlog(
            self.lab, self.redis, self.redis_url, self.plan, self.nonce, self.extra
        )
        for point in backlog.points:
            say(f"  {point.appended:>7} appended: RSS {point.rss_mb:.1f} MB, "
                f"lag {point.lag}, pending {point.pending}")  # fmt: skip
        self.run.backlog = backlog

    async def budget(self) -> None:
        say(f"budget: {self.plan.budget_burst} signals at {LIMIT} orders/s")
        runs = await run_budget(
            self.lab, self.redis, self.redis_url, self.plan, self.nonce, self.extra
        )
        for b in runs:
            say(f"  {b.name}: {b.placed}/{b.signals} placed, {b.rate_limited}×10006, "
                f"{b.seconds:.1f}s")  # fmt: skip
        self.run.budget = runs


def _starter(
    name: str,
    running: Lab,
    redis_url: str,
    sim_url: str,
    plan: Plan,
    extra: dict[str, str],
) -> Starter:
    async def daemon(streams: Streams) -> Proc:
        env = daemon_env(redis_url, sim_url, streams, "bench-daemon", **extra)
        return running.start("daemon", ["-m", "executor", "run"], env)

    async def floor(streams: Streams) -> Proc:
        proc = running.start("floor", ["-m", "bench.floor", "--redis", redis_url,
                                       "--base-url", sim_url, "--stream", streams.signals,
                                       "--concurrency", str(plan.concurrency),
                                       "--loop", floor_loop(extra)])  # fmt: skip
        await wait_for_line(proc, FLOOR_READY, within_s=30)
        return proc

    return daemon if name == "daemon" else floor


def floor_loop(daemon_env: dict[str, str]) -> str:
    """The daemon's event loop (uvloop by default, where it is installed), for the floor."""
    wanted = daemon_env.get("EXECUTOR_EVENT_LOOP", "uvloop").lower()
    return "uvloop" if wanted == "uvloop" and importlib.util.find_spec("uvloop") else "asyncio"


def _show(contender: Contender) -> None:
    for phase in contender.phases:
        lat = phase.latency
        if lat is not None:
            say(f"  {phase.name:>10}: n={lat.n:<6} p50 {lat.p50:8.3f} ms  p99 {lat.p99:8.3f} ms")
    if contender.throughput is not None:
        t = contender.throughput
        say(f"  throughput: {t.per_s:.0f}/s, {t.cpu_us:.0f} µs CPU per order")
    say(f"  peak RSS {contender.peak_rss_mb:.1f} MB")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    given = sys.argv[1:] if argv is None else list(argv)
    command = shlex.join(["python3", "tasks.py", "bench", *given])
    with tempfile.TemporaryDirectory(prefix="executor-bench-") as tmp:
        workdir = args.logs or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        load = machine.LoadMeter()
        try:
            run = asyncio.run(measure(args, workdir, command))
        except KeyboardInterrupt:
            say("interrupted: every process stopped")
            return 130
    run.machine["other_load_cores"] = round(load.other_cores(), 2)
    if run.machine["other_load_cores"] > report.BUSY_MACHINE_CORES:
        say(f"note: other processes used {run.machine['other_load_cores']:.2f} cores meanwhile")
    written = report.write(run, args.out)
    say(f"wrote {', '.join(str(p) for p in written)} in {run.wall_s:.0f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
